// Runs every kernel of kernels/ on the CPU emulator (cuda_emu.hpp) with the launch shapes CudaOps
// uses, on fresh random inputs rounded to the storage type (-DLF_DTYPE), with NaN-poisoned outputs,
// and compares with float64 references: ‖out − ref‖₂ / ‖ref‖₂ under 1e-5 (fp32), 2e-3 (fp16),
// 1e-2 (bf16). Prints one line per check and exits non-zero on any failure.
#include "cuda_emu.hpp"
#include <cstdio>
#include <random>
#include <string>

#include "../../kernels/attention.cu"
#include "../../kernels/conv.cu"
#include "../../kernels/elementwise.cu"
#include "../../kernels/norm.cu"
#include "../../kernels/resample.cu"
#include "../../kernels/shape.cu"
#include "../../kernels/softmax.cu"

using V = std::vector<double>;
static std::mt19937_64 rng(std::random_device{}());
static int failures = 0;
static const double bound = LF_DTYPE == 0 ? 1e-5 : LF_DTYPE == 1 ? 2e-3 : 1e-2;
static const double reductionBound = LF_DTYPE == 0 ? 1e-4 : bound;

struct Buf
{
    std::vector<elem_t> e;
    V q;  // the quantized values as the kernel sees them
};

static Buf rand_buf(size_t n, double scale = 1, double offset = 0)
{
    std::uniform_real_distribution<double> u(-1, 1);
    Buf b{std::vector<elem_t>(n), V(n)};
    for (size_t i = 0; i < n; i++)
    {
        lf_from_f32((float)(u(rng) * scale + offset), &b.e[i]);
        b.q[i] = lf_to_f32(b.e[i]);
    }
    return b;
}

static std::vector<elem_t> poisoned(size_t n)
{
    std::vector<elem_t> v(n);
    for (auto& x : v) lf_from_f32(NAN, &x);
    return v;
}

static void check(const std::string& name, const std::vector<elem_t>& out, const V& ref, double b)
{
    double num = 0, den = 0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); i++)
    {
        double g = lf_to_f32(out[i]);
        if (!std::isfinite(g)) finite = false;
        num += (g - ref[i]) * (g - ref[i]);
        den += ref[i] * ref[i];
    }
    double rel = std::sqrt(num / std::max(den, 1e-300));
    bool ok = finite && rel < b && out.size() == ref.size();
    if (!ok) failures++;
    std::printf("%s dtype%d %-44s rel %.3e bound %.0e%s\n", ok ? "PASS" : "FAIL", LF_DTYPE, name.c_str(), rel, b,
                finite ? "" : " (non-finite output: unwritten element?)");
}

static unsigned grid1d(long long n) { long long b = (n + 255) / 256; return (unsigned)std::max(1LL, std::min(b, 64LL)); }

static double gelu_erf(double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }
static double silu(double v) { return v / (1 + std::exp(-v)); }

static void test_elementwise()
{
    const long long n = 3000;
    auto x = rand_buf(n, 6);
    struct U { const char* name; void (*k)(const elem_t*, elem_t*, lf_i64); double (*r)(double); };
    U ops[] = {
        {"silu", lf_silu, silu},
        {"gelu_erf", lf_gelu_erf, gelu_erf},
        {"gelu_tanh", lf_gelu_tanh, [](double v) { return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); }},
        {"quick_gelu", lf_quick_gelu, [](double v) { return v / (1 + std::exp(-1.702 * v)); }},
    };
    for (auto& op : ops)
    {
        auto y = poisoned(n);
        lf_emu_launch(op.k, {grid1d(n)}, 256, 0, x.e.data(), y.data(), n);
        V ref(n);
        for (long long i = 0; i < n; i++) ref[i] = op.r(x.q[i]);
        check(op.name, y, ref, bound);
    }
    auto y = poisoned(n);
    lf_emu_launch(lf_affine, {grid1d(n)}, 256, 0, x.e.data(), y.data(), n, 0.18215f, -0.5f);
    V ref(n);
    for (long long i = 0; i < n; i++) ref[i] = 0.18215f * x.q[i] - 0.5f;
    check("affine", y, ref, bound);

    // the step table: a and b from row lf_step_row(*step) of a [3, 4] fp32 table (the counter advanced
    // on the device twice), and a x alone when y is null
    {
        float table[12] = {0.5f, -1.f, 2.f, 0.f, 1.5f, 0.25f, -0.75f, 3.f, 0.125f, 1.25f, -2.5f, 1.f};
        int step = 0;
        lf_emu_launch(lf_step_advance, {1u}, 32, 0, &step);
        lf_emu_launch(lf_step_advance, {1u}, 32, 0, &step);
        if (step != 2) { std::printf("FAIL step_advance: counter %d after two launches\n", step); failures++; }
        auto y2 = rand_buf(n, 6);
        auto sc = poisoned(n);
        lf_emu_launch(lf_step_combine, {grid1d(n)}, 256, 0, x.e.data(), y2.e.data(), sc.data(), n, table + 1, table + 2, &step, 4, 3);
        V sr(n);
        for (long long i = 0; i < n; i++) sr[i] = (double)table[9] * x.q[i] + (double)table[10] * y2.q[i];
        check("step_combine", sc, sr, bound);
        int past = 7;  // past the last step: the last row
        auto ss = poisoned(n);
        lf_emu_launch(lf_step_combine, {grid1d(n)}, 256, 0, x.e.data(), (const elem_t*)nullptr, ss.data(), n, table + 3, table + 3, &past, 4, 3);
        for (long long i = 0; i < n; i++) sr[i] = (double)table[11] * x.q[i];
        check("step_scale (clamped row)", ss, sr, bound);
        auto rows = rand_buf(3 * n, 2);
        auto sr2 = poisoned(n);
        lf_emu_launch(lf_step_select_row, {grid1d(n)}, 256, 0, rows.e.data(), sr2.data(), n, &step, 3);
        for (long long i = 0; i < n; i++) sr[i] = rows.q[2 * n + i];
        check("step_select_row", sr2, sr, 1e-12);
    }

    const long long rows = 14, d = 40;
    auto g = rand_buf(rows * 2 * d, 3);
    auto gy = poisoned(rows * d);
    lf_emu_launch(lf_geglu, {grid1d(rows * d)}, 256, 0, g.e.data(), gy.data(), rows, d);
    V gr(rows * d);
    for (long long r = 0; r < rows; r++)
        for (long long i = 0; i < d; i++) gr[r * d + i] = g.q[r * 2 * d + i] * gelu_erf(g.q[r * 2 * d + d + i]);
    check("geglu", gy, gr, bound);
}

static lf_index_map broadcast_map(const std::vector<int>& a, const std::vector<int>& b)
{
    lf_index_map m{};
    m.rank = (int)a.size();
    long long stride = 1;
    for (int i = (int)a.size() - 1, j = (int)b.size() - 1; i >= 0; i--, j--)
    {
        m.dims[i] = a[i];
        if (j < 0) { m.strides[i] = 0; continue; }
        m.strides[i] = b[j] == 1 ? 0 : stride;
        stride *= b[j];
    }
    return m;
}

static void test_binary()
{
    std::vector<std::pair<std::vector<int>, std::vector<int>>> cases = {
        {{2, 6, 5, 4}, {2, 6, 5, 4}}, {{2, 6, 5, 4}, {6, 1, 1}}, {{2, 6, 5, 4}, {4}}, {{2, 6, 5, 4}, {2, 1, 5, 1}}};
    for (auto& [as, bs] : cases)
    {
        long long na = 1, nb = 1;
        for (int d : as) na *= d;
        for (int d : bs) nb *= d;
        auto a = rand_buf(na), b = rand_buf(nb);
        auto map = broadcast_map(as, bs);
        int same = as == bs;
        V ref(na);
        std::vector<int> idx(as.size());
        for (long long i = 0; i < na; i++)
        {
            long long r = i;
            for (int d = (int)as.size() - 1; d >= 0; d--) { idx[d] = (int)(r % as[d]); r /= as[d]; }
            long long off = 0;
            for (size_t d = 0; d < bs.size(); d++) off = off * bs[d] + (bs[d] == 1 ? 0 : idx[d + as.size() - bs.size()]);
            ref[i] = a.q[i] * b.q[off];
        }
        auto y = poisoned(na);
        lf_emu_launch(lf_mul, {grid1d(na)}, 256, 0, a.e.data(), b.e.data(), y.data(), na, map, same);
        check("mul broadcast rank-b " + std::to_string(bs.size()) + (same ? " same" : ""), y, ref, bound);
    }
}

static void test_norms()
{
    struct G { int n, c, s, g; bool affine, silu; };
    for (G t : {G{2, 64, 100, 32, true, true}, G{1, 12, 49, 4, true, false}, G{2, 8, 9, 2, false, true}})
    {
        auto x = rand_buf((size_t)t.n * t.c * t.s, 3, 1.5);
        auto gm = rand_buf(t.c), bt = rand_buf(t.c);
        auto y = poisoned(x.e.size());
        lf_emu_launch(lf_group_norm, {(unsigned)t.g, (unsigned)t.n, 1}, 512, 0, x.e.data(), t.affine ? gm.e.data() : nullptr,
                      t.affine ? bt.e.data() : nullptr, y.data(), t.c, (lf_i64)t.s, t.g, 1e-5f, t.silu ? 1 : 0);
        V ref(x.q.size());
        int cpg = t.c / t.g;
        for (int b = 0; b < t.n; b++)
            for (int g = 0; g < t.g; g++)
            {
                size_t st = ((size_t)b * t.c + g * cpg) * t.s, cnt = (size_t)cpg * t.s;
                double mean = 0, var = 0;
                for (size_t i = 0; i < cnt; i++) mean += x.q[st + i];
                mean /= cnt;
                for (size_t i = 0; i < cnt; i++) var += (x.q[st + i] - mean) * (x.q[st + i] - mean);
                var /= cnt;
                for (size_t i = 0; i < cnt; i++)
                {
                    int ch = g * cpg + (int)(i / t.s);
                    double v = (x.q[st + i] - mean) / std::sqrt(var + 1e-5);
                    if (t.affine) v = v * gm.q[ch] + bt.q[ch];
                    ref[st + i] = t.silu ? silu(v) : v;
                }
            }
        check("group_norm c" + std::to_string(t.c) + " g" + std::to_string(t.g) + (t.silu ? "+silu" : ""), y, ref, reductionBound);
    }
    for (int d : {768, 33, 1280})
    {
        int rows = 7;
        auto x = rand_buf((size_t)rows * d, 2, -0.7);
        auto gm = rand_buf(d), bt = rand_buf(d);
        auto y = poisoned(x.e.size());
        unsigned threads = (unsigned)std::min(512, std::max(32, (d + 31) / 32 * 32));
        lf_emu_launch(lf_layer_norm, {(unsigned)rows}, threads, 0, x.e.data(), gm.e.data(), bt.e.data(), y.data(), d, 1e-5f);
        V ref(x.q.size());
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < d; i++) mean += x.q[r * d + i];
            mean /= d;
            for (int i = 0; i < d; i++) var += (x.q[r * d + i] - mean) * (x.q[r * d + i] - mean);
            var /= d;
            for (int i = 0; i < d; i++) ref[r * d + i] = (x.q[r * d + i] - mean) / std::sqrt(var + 1e-5) * gm.q[i] + bt.q[i];
        }
        check("layer_norm " + std::to_string(d), y, ref, reductionBound);

        auto s = rand_buf((size_t)rows * d, 8);
        auto sy = poisoned(s.e.size());
        lf_emu_launch(lf_softmax, {(unsigned)rows}, threads, 0, s.e.data(), sy.data(), d);
        V sr(s.q.size());
        for (int r = 0; r < rows; r++)
        {
            double m = -INFINITY, sum = 0;
            for (int i = 0; i < d; i++) m = std::max(m, s.q[r * d + i]);
            for (int i = 0; i < d; i++) sum += std::exp(s.q[r * d + i] - m);
            for (int i = 0; i < d; i++) sr[r * d + i] = std::exp(s.q[r * d + i] - m) / sum;
        }
        check("softmax " + std::to_string(d), sy, sr, reductionBound);
    }
}

static void test_attention()
{
    struct A { int b, m, n, h, d; bool bias, causal; };
    for (A t : {A{2, 100, 100, 2, 64, false, false}, A{2, 70, 77, 2, 64, false, false}, A{2, 77, 77, 2, 64, true, true},
                A{1, 40, 33, 2, 8, false, false}, A{1, 50, 45, 2, 40, true, false}, A{1, 40, 40, 1, 160, false, true},
                A{1, 20, 36, 1, 512, false, false}})
    {
        // the module is specialized by -DLF_HEAD_DIM; the emulator compiles one head dim per build
        if (t.d != LF_HEAD_DIM) continue;
        int w = t.h * t.d, r = LF_ROWS_PER_WARP;
        auto q = rand_buf((size_t)t.b * t.m * w, 1.5), k = rand_buf((size_t)t.b * t.n * w, 1.5), v = rand_buf((size_t)t.b * t.n * w);
        auto bias = rand_buf((size_t)t.b * t.n);
        if (t.bias)
            for (int j = t.n - 5; j < t.n; j++) { lf_from_f32(-INFINITY, &bias.e[j]); bias.q[j] = -INFINITY; }
        auto y = poisoned((size_t)t.b * t.m * w);
        int rowsPerBlock = 4 * r;
        size_t smem = 4 * (4 * r * t.d + 32 * (t.d + 1) + 32 * t.d);
        lf_emu_launch(lf_attention, {(unsigned)((t.m + rowsPerBlock - 1) / rowsPerBlock), (unsigned)t.h, (unsigned)t.b}, 128, smem,
                      q.e.data(), k.e.data(), v.e.data(), t.bias ? bias.e.data() : nullptr, y.data(), t.m, t.n, t.h,
                      1.f / std::sqrt((float)t.d), t.causal ? 1 : 0);
        V ref(y.size());
        std::vector<double> s(t.n);
        for (int bi = 0; bi < t.b; bi++)
            for (int h = 0; h < t.h; h++)
                for (int i = 0; i < t.m; i++)
                {
                    double mx = -INFINITY;
                    for (int j = 0; j < t.n; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < t.d; e++) dot += q.q[((size_t)bi * t.m + i) * w + h * t.d + e] * k.q[((size_t)bi * t.n + j) * w + h * t.d + e];
                        s[j] = dot / std::sqrt((double)t.d) + (t.bias ? bias.q[bi * t.n + j] : 0);
                        if (t.causal && j > i) s[j] = -INFINITY;
                        mx = std::max(mx, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < t.n; j++) sum += s[j] = std::exp(s[j] - mx);
                    for (int e = 0; e < t.d; e++)
                    {
                        double acc = 0;
                        for (int j = 0; j < t.n; j++) acc += s[j] * v.q[((size_t)bi * t.n + j) * w + h * t.d + e];
                        ref[((size_t)bi * t.m + i) * w + h * t.d + e] = acc / sum;
                    }
                }
        char name[96];
        std::snprintf(name, sizeof name, "attention b%d m%d n%d h%d d%d%s%s", t.b, t.m, t.n, t.h, t.d, t.bias ? " bias" : "", t.causal ? " causal" : "");
        check(name, y, ref, reductionBound);
    }
}

static void test_conv_resample_shape()
{
    // im2col (the GEMM itself is cuBLAS): compare the column matrix element for element
    int n = 2, c = 3, h = 7, w = 6, kh = 3, kw = 3, stride = 2, pad = 1;
    int ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    auto x = rand_buf((size_t)n * c * h * w);
    long long total = (long long)n * c * kh * kw * ho * wo;
    auto col = poisoned(total);
    lf_emu_launch(lf_im2col, {grid1d(total)}, 256, 0, x.e.data(), col.data(), n, c, h, w, kh, kw, stride, pad, ho, wo);
    V ref(total);
    for (int b = 0; b < n; b++)
        for (int ci = 0; ci < c; ci++)
            for (int ky = 0; ky < kh; ky++)
                for (int kx = 0; kx < kw; kx++)
                    for (int oy = 0; oy < ho; oy++)
                        for (int ox = 0; ox < wo; ox++)
                        {
                            int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                            size_t row = ((size_t)ci * kh + ky) * kw + kx;
                            ref[(((size_t)b * c * kh * kw) + row) * ho * wo + oy * wo + ox] =
                                iy < 0 || iy >= h || ix < 0 || ix >= w ? 0 : x.q[(((size_t)b * c + ci) * h + iy) * w + ix];
                        }
    check("im2col 3x3 s2 p1", col, ref, 1e-12);

    auto u = rand_buf(2 * 3 * 5 * 7);
    auto uy = poisoned(2 * 3 * 10 * 14);
    lf_emu_launch(lf_upsample2x_nearest, {grid1d(uy.size())}, 256, 0, u.e.data(), uy.data(), (lf_i64)6, 5, 7);
    V ur(uy.size());
    for (int p = 0; p < 6; p++)
        for (int yy = 0; yy < 10; yy++)
            for (int xx = 0; xx < 14; xx++) ur[(p * 10 + yy) * 14 + xx] = u.q[(p * 5 + yy / 2) * 7 + xx / 2];
    check("upsample2x", uy, ur, 1e-12);

    float ts[] = {999.f, 1.f, 417.f, 0.f};
    for (auto [dim, flip, shift] : {std::tuple{320, 1, 0.f}, std::tuple{256, 0, 1.f}, std::tuple{33, 1, 1.f}})
    {
        auto te = poisoned(4 * dim);
        lf_emu_launch(lf_timestep_embedding, {grid1d(4 * dim)}, 256, 0, ts, (const int*)nullptr, 0, 1, 1, te.data(), 4, dim, flip, shift, 1.f, std::log(10000.f));
        V tr(4 * dim, 0.0);
        int half = dim / 2;
        for (int r = 0; r < 4; r++)
            for (int i = 0; i < half; i++)
            {
                double arg = ts[r] * std::exp(-std::log(10000.0) * i / (half - shift));
                tr[r * dim + i] = flip ? std::cos(arg) : std::sin(arg);
                tr[r * dim + half + i] = flip ? std::sin(arg) : std::cos(arg);
            }
        check("timestep_embedding " + std::to_string(dim), te, tr, reductionBound);
    }
    {
        // from a step table: row 1 of a [2, 2] table (stride 2) at the counter, each value for 3 rows
        float table[4] = {999.f, 3.f, 417.f, 1.f};
        int step = 1, dim = 64, half = 32;
        auto te = poisoned(6 * dim);
        lf_emu_launch(lf_timestep_embedding, {grid1d(6 * dim)}, 256, 0, (const float*)table, (const int*)&step, 2, 2, 3, te.data(), 6, dim, 1,
                      0.f, 1.f, std::log(10000.f));
        V tr(6 * dim, 0.0);
        for (int r = 0; r < 6; r++)
            for (int i = 0; i < half; i++)
            {
                double arg = table[2 + r / 3] * std::exp(-std::log(10000.0) * i / half);
                tr[r * dim + i] = std::cos(arg);
                tr[r * dim + half + i] = std::sin(arg);
            }
        check("timestep_embedding (step table)", te, tr, reductionBound);
    }

    auto table = rand_buf(50 * 24);
    std::vector<int> ids(77);
    for (auto& id : ids) id = (int)(rng() % 50);
    auto gy = poisoned(77 * 24);
    lf_emu_launch(lf_gather, {grid1d(77 * 24)}, 256, 0, table.e.data(), ids.data(), gy.data(), 77, (lf_i64)24);
    V gr(77 * 24);
    for (int r = 0; r < 77; r++)
        for (int i = 0; i < 24; i++) gr[r * 24 + i] = table.q[ids[r] * 24 + i];
    check("gather", gy, gr, 1e-12);

    // permute [2,3,4,5] -> (0,2,3,1), as CudaOps.PermuteMap builds it
    int shape[4] = {2, 3, 4, 5}, axes[4] = {0, 2, 3, 1};
    long long strides[4] = {60, 20, 5, 1};
    lf_index_map pm{};
    pm.rank = 4;
    for (int i = 0; i < 4; i++) { pm.dims[i] = shape[axes[i]]; pm.strides[i] = strides[axes[i]]; }
    auto px = rand_buf(120);
    auto py = poisoned(120);
    lf_emu_launch(lf_permute, {grid1d(120)}, 256, 0, px.e.data(), py.data(), (lf_i64)120, pm);
    V pr(120);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 4; b++)
            for (int cc = 0; cc < 5; cc++)
                for (int d = 0; d < 3; d++) pr[((a * 4 + b) * 5 + cc) * 3 + d] = px.q[((a * 3 + d) * 4 + b) * 5 + cc];
    check("permute (0,2,3,1)", py, pr, 1e-12);

    // concat along axis 1 of [2,3,4] and [2,5,4] through two row copies, then slice [2:6)
    auto ca = rand_buf(24), cb = rand_buf(40);
    auto cy = poisoned(64);
    lf_emu_launch(lf_copy_rows, {grid1d(24)}, 256, 0, ca.e.data(), (lf_i64)12, (lf_i64)0, cy.data(), (lf_i64)32, (lf_i64)0, (lf_i64)2, (lf_i64)12);
    lf_emu_launch(lf_copy_rows, {grid1d(40)}, 256, 0, cb.e.data(), (lf_i64)20, (lf_i64)0, cy.data(), (lf_i64)32, (lf_i64)12, (lf_i64)2, (lf_i64)20);
    V cr(64);
    for (int b = 0; b < 2; b++)
        for (int r = 0; r < 8; r++)
            for (int i = 0; i < 4; i++) cr[(b * 8 + r) * 4 + i] = r < 3 ? ca.q[(b * 3 + r) * 4 + i] : cb.q[(b * 5 + r - 3) * 4 + i];
    check("concat axis 1", cy, cr, 1e-12);
    auto sy = poisoned(32);
    lf_emu_launch(lf_copy_rows, {grid1d(32)}, 256, 0, cy.data(), (lf_i64)32, (lf_i64)8, sy.data(), (lf_i64)16, (lf_i64)0, (lf_i64)2, (lf_i64)16);
    V sr(32);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 16; i++) sr[b * 16 + i] = cr[b * 32 + 8 + i];
    check("slice axis 1 [2,6)", sy, sr, 1e-12);
}

int main()
{
#ifndef LF_SKIP_COMMON
    test_elementwise();
    test_binary();
    test_norms();
    test_conv_resample_shape();
#endif
    test_attention();
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
    return failures ? 1 : 0;
}
