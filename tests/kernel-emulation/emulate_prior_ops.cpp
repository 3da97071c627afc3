// Runs kernels/prior_ops.cu (IOps' prior ops on storage-typed tensors, CudaOps.Priors.cs) on the
// CPU emulator with CudaOps' launch shapes, fresh random inputs rounded to the storage type and
// NaN-poisoned outputs, against float64 references. Bounds: 1e-5 (fp32), 2e-3 (fp16), 1e-2 (bf16).
#include "cuda_emu.hpp"
#include <cstdio>
#include <random>
#include <string>

#include "../../kernels/prior_ops.cu"

using V = std::vector<double>;
static std::mt19937_64 rng(std::random_device{}());
static int failures = 0;
static const double bound = LF_DTYPE == 0 ? 1e-5 : LF_DTYPE == 1 ? 2e-3 : 1e-2;

struct Buf
{
    std::vector<elem_t> e;
    V q;
};

static Buf quantized(const V& x)
{
    Buf b{std::vector<elem_t>(x.size()), V(x.size())};
    for (size_t i = 0; i < x.size(); i++)
    {
        lf_from_f32((float)x[i], &b.e[i]);
        b.q[i] = lf_to_f32(b.e[i]);
    }
    return b;
}

static Buf rand_buf(size_t n, double lo, double hi)
{
    std::uniform_real_distribution<double> u(lo, hi);
    V x(n);
    for (auto& v : x) v = u(rng);
    return quantized(x);
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
        if (std::isinf(ref[i]) && g == ref[i]) continue;
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

// lf_attention_stats: s = 1 / sum_j (mean_h p)^2 and the column, float64 with materialized rows
static void test_stats(int B, int M, int N, int H, int D, int column)
{
    const int inner = H * D, warps = 4;
    auto q = rand_buf((size_t)B * M * inner, -1.5, 1.5), k = rand_buf((size_t)B * N * inner, -1.5, 1.5);
    auto s = poisoned((size_t)B * M), c = poisoned((size_t)B * M);
    lf_emu_launch(lf_attention_stats, {(unsigned)((M + warps - 1) / warps), (unsigned)B, 1}, 32 * warps, 2 * H * warps * 4, q.e.data(), k.e.data(),
                  s.data(), column >= 0 ? c.data() : nullptr, column, M, N, H, D, (float)(1 / std::sqrt((double)D)));
    V rs(B * M), rc(B * M), p(N), mean(N);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < M; i++)
        {
            std::fill(mean.begin(), mean.end(), 0.0);
            for (int h = 0; h < H; h++)
            {
                double mx = -INFINITY, z = 0;
                for (int j = 0; j < N; j++)
                {
                    double acc = 0;
                    for (int d = 0; d < D; d++) acc += q.q[((size_t)b * M + i) * inner + h * D + d] * k.q[((size_t)b * N + j) * inner + h * D + d];
                    p[j] = acc / std::sqrt((double)D);
                    mx = std::max(mx, p[j]);
                }
                for (int j = 0; j < N; j++) z += p[j] = std::exp(p[j] - mx);
                for (int j = 0; j < N; j++) mean[j] += p[j] / z / H;
            }
            double ss = 0;
            for (int j = 0; j < N; j++) ss += mean[j] * mean[j];
            rs[b * M + i] = 1 / ss;
            rc[b * M + i] = column >= 0 ? mean[column] : 0;
        }
    char name[96];
    std::snprintf(name, sizeof name, "b%d m%d n%d h%d d%d col%d", B, M, N, H, D, column);
    check(std::string("stats s ") + name, s, rs, bound);
    if (column >= 0) check(std::string("stats c ") + name, c, rc, bound);
}

static V minmax(const V& x, int off, int m)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < m; i++) { lo = std::min(lo, x[off + i]); hi = std::max(hi, x[off + i]); }
    V r(m);
    for (int i = 0; i < m; i++) r[i] = hi > lo ? (x[off + i] - lo) / (hi - lo) : 0;
    return r;
}

static void test_vectors()
{
    const int B = 2, h = 13, w = 11, M = h * w;
    auto s = rand_buf((size_t)B * M, 1, 77);
    auto dens = poisoned((size_t)B * M);
    lf_emu_launch(lf_po_density, {B}, 256, 0, s.e.data(), dens.data(), M);
    V rd(B * M);
    for (int b = 0; b < B; b++)
    {
        auto n = minmax(s.q, b * M, M);
        for (int i = 0; i < M; i++) rd[b * M + i] = 1 - n[i];
    }
    check("density s' = 1 - minmax(s)", dens, rd, bound);

    V dq(B * M);
    for (int i = 0; i < B * M; i++) dq[i] = lf_to_f32(dens[i]);
    for (auto [oh, ow] : {std::pair{6, 5}, std::pair{26, 22}, std::pair{7, 16}})
    {
        auto y = poisoned((size_t)B * oh * ow);
        lf_emu_launch(lf_po_resize_bilinear, {grid1d((long long)B * oh * ow)}, 256, 0, dens.data(), y.data(), h, w, oh, ow, (lf_i64)B * oh * ow);
        V r((size_t)B * oh * ow);
        const double sy = (double)h / oh, sx = (double)w / ow;
        for (int b = 0; b < B; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    double fy = std::max((oy + 0.5) * sy - 0.5, 0.0), fx = std::max((ox + 0.5) * sx - 0.5, 0.0);
                    int y0 = std::min((int)fy, h - 1), y1 = std::min(y0 + 1, h - 1), x0 = std::min((int)fx, w - 1), x1 = std::min(x0 + 1, w - 1);
                    double ly = fy - y0, lx = fx - x0;
                    const double* src = dq.data() + (size_t)b * M;
                    double top = src[y0 * w + x0] * (1 - lx) + src[y0 * w + x1] * lx, bot = src[y1 * w + x0] * (1 - lx) + src[y1 * w + x1] * lx;
                    r[((size_t)b * oh + oy) * ow + ox] = top * (1 - ly) + bot * ly;
                }
        check("bilinear " + std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" + std::to_string(ow), y, r, bound);
    }

    auto content = rand_buf((size_t)B * M, 0, 1);
    auto soft = poisoned((size_t)B * M), hard = poisoned((size_t)B * M);
    lf_emu_launch(lf_po_masks, {B}, 256, 0, dens.data(), content.e.data(), soft.data(), hard.data(), M, 10.f);
    V prod(B * M), rsoft(B * M), rhard(B * M);
    for (int i = 0; i < B * M; i++) prod[i] = dq[i] * content.q[i];
    for (int b = 0; b < B; b++)
    {
        auto n = minmax(prod, b * M, M);
        for (int i = 0; i < M; i++)
        {
            rsoft[b * M + i] = n[i];
            rhard[b * M + i] = 1 / (1 + std::exp(-10 * (n[i] - 0.5)));
        }
    }
    check("mask_soft = minmax(s' c)", soft, rsoft, bound);
    check("mask_hard = sigmoid(10 (soft - 0.5))", hard, rhard, bound);

    // blend after to_out, masks [T] shared by both rows; new outputs
    const int C = 24;
    auto fg = rand_buf((size_t)B * M * C, -1, 1), bl = rand_buf((size_t)B * M * C, -1, 1);
    auto fo = poisoned(fg.e.size()), bo = poisoned(fg.e.size());
    lf_emu_launch(lf_po_blend, {grid1d((long long)B * M * C)}, 256, 0, fg.e.data(), bl.e.data(), soft.data(), hard.data(), fo.data(), bo.data(),
                  M, C, (lf_i64)B * M * C);
    V rf(fg.q.size()), rb(fg.q.size());
    for (size_t at = 0; at < rf.size(); at++)
    {
        int t = (int)(at / C % M);
        double sm = lf_to_f32(soft[t]), hm = lf_to_f32(hard[t]);
        rb[at] = fg.q[at] * sm + bl.q[at] * (1 - sm);
        rf[at] = rb[at] * hm + fg.q[at] * (1 - hm);
    }
    check("blend a'_blend", bo, rb, bound);
    check("blend a'_fg", fo, rf, bound);

    // exclusion bias [2, M + M] from the first row's hard mask
    auto bias = poisoned((size_t)2 * 2 * M);
    lf_emu_launch(lf_po_exclusion_bias, {grid1d(4LL * M)}, 256, 0, hard.data(), bias.data(), M, M, (lf_i64)4 * M);
    V rbias(4 * M);
    int masked = 0;
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 2 * M; j++)
        {
            bool ex = j >= M && lf_to_f32(hard[j - M]) > 0.5f;
            masked += ex;
            rbias[r * 2 * M + j] = ex ? -INFINITY : 0;
        }
    bool exact = masked > 0 && masked < 2 * M;
    for (int i = 0; i < 4 * M; i++) exact = exact && lf_to_f32(bias[i]) == rbias[i];
    if (!exact) failures++;
    std::printf("%s dtype%d exclusion key bias (exact, %d keys masked)\n", exact ? "PASS" : "FAIL", LF_DTYPE, masked);

    auto f32 = std::vector<float>(B * M);
    for (int i = 0; i < B * M; i++) f32[i] = (float)s.q[i] * 0.37f;
    auto conv = poisoned(f32.size());
    lf_emu_launch(lf_f32_to_storage, {grid1d(B * M)}, 256, 0, f32.data(), conv.data(), (lf_i64)B * M);
    V rconv(f32.begin(), f32.end());
    check("fp32 -> storage", conv, rconv, bound);
}

int main()
{
    test_stats(2, 37, 45, 3, 8, 5);
    test_stats(1, 30, 77, 5, 16, 76);   // cross-attention shape, last column
    test_stats(1, 21, 33, 2, 40, -1);   // s only
    test_vectors();
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
    return failures;
}
