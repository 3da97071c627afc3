// Runs kernels/attention_priors.cu (the specialization given by -D, as CudaPriorAttention builds it)
// and kernels/prior_masks.cu on the CPU emulator, with the host launcher's launch shapes, fresh
// random inputs rounded to the storage type, NaN-poisoned outputs, and compares with float64:
// ‖out − ref‖₂ / ‖ref‖₂ under 2e-3 (fp16) / 1e-2 (bf16) for O, s, c and the blend after to_out; 1e-5 for
// the fp32 mask kernels. Prints one line per check; exit status = number of failures (0: all pass).
#include "prior_ptx_emu.hpp"
#include <cstdio>
#include <random>
#include <string>

#include "../../kernels/attention_priors.cu"
#include "../../kernels/prior_masks.cu"

using V = std::vector<double>;
static std::mt19937_64 rng(std::random_device{}());
static int failures = 0;
static const double bound = LF_DTYPE == 1 ? 2e-3 : 1e-2;

template <typename T>
static double to_d(const T& x) { return lf_to_f32(x); }
static double to_d(float x) { return x; }

template <typename T>
static void check(const std::string& name, const std::vector<T>& out, const V& ref, double b)
{
    double num = 0, den = 0;
    bool finite = out.size() == ref.size();
    for (size_t i = 0; i < ref.size() && i < out.size(); i++)
    {
        double g = to_d(out[i]);
        if (!std::isfinite(g)) finite = false;
        num += (g - ref[i]) * (g - ref[i]);
        den += ref[i] * ref[i];
    }
    double rel = std::sqrt(num / std::max(den, 1e-300));
    bool ok = finite && rel < b;
    if (!ok) failures++;
    std::printf("%s dtype%d %-58s rel %.3e bound %.0e%s\n", ok ? "PASS" : "FAIL", LF_DTYPE, name.c_str(), rel, b,
                finite ? "" : " (non-finite or missing output: unwritten element?)");
}

struct Buf
{
    std::vector<elem_t> e;
    V q;
};

static Buf rand_buf(size_t n, double scale)
{
    std::uniform_real_distribution<double> u(-1, 1);
    Buf b{std::vector<elem_t>(n), V(n)};
    for (size_t i = 0; i < n; i++)
    {
        lf_from_f32((float)(u(rng) * scale), &b.e[i]);
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

// float64 reference: O, s, c
static void reference(const V& q, const V& k, const V& v, const V* bias, int B, int M, int N, int H, int D, int eos, V& o, V& s, V& c)
{
    const int C = H * D;
    o.assign((size_t)B * M * C, 0);
    s.assign((size_t)B * M, 0);
    c.assign((size_t)B * M, 0);
    std::vector<double> p(N), mean(N);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < M; i++)
        {
            std::fill(mean.begin(), mean.end(), 0.0);
            for (int h = 0; h < H; h++)
            {
                double mx = -INFINITY;
                for (int j = 0; j < N; j++)
                {
                    double acc = 0;
                    for (int d = 0; d < D; d++) acc += q[((size_t)b * M + i) * C + h * D + d] * k[((size_t)b * N + j) * C + h * D + d];
                    p[j] = acc / std::sqrt((double)D) + (bias ? (*bias)[(size_t)b * N + j] : 0.0);
                    mx = std::max(mx, p[j]);
                }
                double z = 0;
                for (int j = 0; j < N; j++) z += p[j] = std::isinf(mx) ? 0 : std::exp(p[j] - mx);
                for (int j = 0; j < N; j++)
                {
                    p[j] = z > 0 ? p[j] / z : 0;
                    mean[j] += p[j] / H;
                }
                for (int d = 0; d < D; d++)
                {
                    double acc = 0;
                    for (int j = 0; j < N; j++) acc += p[j] * v[((size_t)b * N + j) * C + h * D + d];
                    o[((size_t)b * M + i) * C + h * D + d] = acc;
                }
            }
            double ss = 0;
            for (int j = 0; j < N; j++) ss += mean[j] * mean[j];
            s[(size_t)b * M + i] = 1 / ss;
            c[(size_t)b * M + i] = eos >= 0 ? mean[eos] : 0;
        }
}

static void run_case(int B, int M, int N, int H, int eos)
{
    const int D = LF_HEAD_DIM, C = H * D;
#if LF_PRIORS
    if (H != LF_HEADS) return;
#endif
    auto q = rand_buf((size_t)B * M * C, 1.5), k = rand_buf((size_t)B * N * C, 1.5), v = rand_buf((size_t)B * N * C, 1.0);
    Buf bias;
    V biasq;
#if LF_KEY_BIAS
    bias = rand_buf((size_t)B * N, 2.0);
    for (int j = 0; j < N; j += 5) { lf_from_f32(-INFINITY, &bias.e[j]); bias.q[j] = -INFINITY; }  // row 0: every fifth key excluded
#endif
    auto out = poisoned((size_t)B * M * C);
    std::vector<float> s((size_t)B * M, NAN), c((size_t)B * M, NAN);
    const int rows = 16 * LF_WARPS;
    const unsigned gy = LF_PRIORS ? 1 : H;
    const size_t shared = 2 * 2 * 64 * (D + 8) * 2 + (LF_SPARSITY ? 2 * H * rows * 4 : 0);  // CudaPriorAttention.SharedBytes
    lf_emu_launch(lf_prior_attention, {(unsigned)((M + rows - 1) / rows), gy, (unsigned)B}, 32 * LF_WARPS, shared, q.e.data(), k.e.data(),
                  v.e.data(), LF_KEY_BIAS ? bias.e.data() : nullptr, out.data(), s.data(), c.data(), eos < 0 ? 0 : eos, M, N, H,
                  1.f / std::sqrt((float)D));
    V ro, rs, rc;
    reference(q.q, k.q, v.q, LF_KEY_BIAS ? &bias.q : nullptr, B, M, N, H, D, eos, ro, rs, rc);
    char name[160];
    std::snprintf(name, sizeof name, "b%d m%d n%d h%d d%d w%d p%d s%d e%d kb%d", B, M, N, H, D, LF_WARPS, LF_PRIORS, LF_SPARSITY, LF_EOS,
                  LF_KEY_BIAS);
    check(std::string("O ") + name, out, ro, bound);
    if (LF_SPARSITY) check(std::string("s ") + name, s, rs, bound);
    if (LF_EOS) check(std::string("c ") + name, c, rc, bound);
}

static void test_masks()
{
    const int B = 2, M = 700, Cc = 24;
    std::uniform_real_distribution<float> u01(0, 1);
    std::vector<float> s(B * M), content(B * M), dens(B * M, NAN), soft(B * M, NAN), hard(B * M, NAN);
    for (auto& x : s) x = 1 + 76 * u01(rng);
    for (auto& x : content) x = u01(rng);
    lf_emu_launch(lf_density_prior, {B}, 256, 0, s.data(), dens.data(), M);
    lf_emu_launch(lf_prior_masks, {B}, 256, 0, dens.data(), content.data(), soft.data(), hard.data(), M, 10.f);
    V rd(B * M), rsoft(B * M), rhard(B * M);
    for (int b = 0; b < B; b++)
    {
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < M; i++) { lo = std::min(lo, (double)s[b * M + i]); hi = std::max(hi, (double)s[b * M + i]); }
        for (int i = 0; i < M; i++) rd[b * M + i] = 1 - (s[b * M + i] - lo) / (hi - lo);
        lo = INFINITY; hi = -INFINITY;
        for (int i = 0; i < M; i++) { double p = rd[b * M + i] * content[b * M + i]; lo = std::min(lo, p); hi = std::max(hi, p); }
        for (int i = 0; i < M; i++)
        {
            rsoft[b * M + i] = (rd[b * M + i] * content[b * M + i] - lo) / (hi - lo);
            rhard[b * M + i] = 1 / (1 + std::exp(-10 * (rsoft[b * M + i] - 0.5)));
        }
    }
    check("density prior s' = 1 - minmax(s)", dens, rd, 1e-5);
    check("mask_soft = minmax(s' c)", soft, rsoft, 1e-5);
    check("mask_hard = sigmoid(10 (soft - 0.5))", hard, rhard, 1e-5);

    auto fg = rand_buf((size_t)B * M * Cc, 1), bl = rand_buf((size_t)B * M * Cc, 1);
    V rfg(fg.q.size()), rbl(bl.q.size());
    for (int b = 0; b < B; b++)
        for (int i = 0; i < M; i++)
            for (int x = 0; x < Cc; x++)
            {
                size_t at = ((size_t)b * M + i) * Cc + x;
                double y = fg.q[at] * soft[b * M + i] + bl.q[at] * (1 - soft[b * M + i]);
                rbl[at] = y;
                rfg[at] = y * hard[b * M + i] + fg.q[at] * (1 - hard[b * M + i]);
            }
    lf_emu_launch(lf_prior_blend, {8}, 256, 0, fg.e.data(), bl.e.data(), soft.data(), hard.data(), M, M, Cc, (lf_i64)B * M * Cc);
    check("blend after to_out: a'_blend", bl.e, rbl, bound);
    check("blend after to_out: a'_fg", fg.e, rfg, bound);
}

int main()
{
#ifdef LF_EMU_MASKS
    test_masks();
#endif
    // ragged query tiles, N below / across / exactly at key tiles, eos in the first and a later tile
#ifdef LF_HEADS
    const int h = LF_HEADS;
#else
    const int h = 3;
#endif
    run_case(2, 40, 77, h, 76);
    run_case(1, 33, 150, h, 5);
    run_case(1, 16 * LF_WARPS, 64, h, 63);
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
    return failures;
}
