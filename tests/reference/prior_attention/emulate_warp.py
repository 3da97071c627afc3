"""Lane-level numpy emulation of one warp of kernels/attention_priors.cu (no GPU needed).

It replays the kernel's own index expressions (Q/K fragment loads, the C->A reuse of the score
fragments for P V, the ldmatrix.x4.trans addressing of V, the <EOS> capture and the sweep-2
head-mean sum of squares) with the PTX ISA's fragment layouts for mma.m16n8k16 (.f16, row.col):
  A (16x16): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
  B (16x8):  b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
  C (16x8):  c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..)
  ldmatrix .trans: lane gets elements (rows 2t, 2t+1; column g) of each 8x8 matrix,
  matrix i addressed by lanes 8i..8i+7 (row = lane & 7).
and checks the results against a float64 reference. Usage: python3 emulate_warp.py
"""
import numpy as np

D, BC, NT, KD, DT = 64, 64, 8, 4, 8
rng = np.random.default_rng(1)


def mma(c, a_elems, b_elems):
    """c: [32][4] f32; a_elems: per lane 8 values (a0 lo,hi, a1 lo,hi, ...); b_elems: per lane 4 values."""
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        a = a_elems[lane]
        A[g, 2*t:2*t+2] = a[0:2]; A[g+8, 2*t:2*t+2] = a[2:4]
        A[g, 2*t+8:2*t+10] = a[4:6]; A[g+8, 2*t+8:2*t+10] = a[6:8]
        b = b_elems[lane]
        B[2*t:2*t+2, g] = b[0:2]; B[2*t+8:2*t+10, g] = b[2:4]
    C = A @ B
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        c[lane][0] += C[g, 2*t]; c[lane][1] += C[g, 2*t+1]
        c[lane][2] += C[g+8, 2*t]; c[lane][3] += C[g+8, 2*t+1]


def ldmatrix_x4_trans(smem, ld, addr_of_lane):
    """smem: 2-D array [rows][ld]; addr_of_lane(lane) -> (row, col) of the 8-element row that lane supplies."""
    mats = []
    for i in range(4):
        rows = [addr_of_lane(8*i + r) for r in range(8)]
        mats.append(np.array([smem[row, col:col+8] for (row, col) in rows]))  # 8x8, row r from lane 8i+r
    out = []
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        out.append([(m[2*t, g], m[2*t+1, g]) for m in mats])  # .trans: (rows 2t,2t+1; column g)
    return out


def warp(q, k, v, heads, eos, n_len):
    """q [16, H*D], k/v [N, H*D] for one warp's 16 rows; returns O, s, c as the kernel computes them."""
    scale_log2 = 1 / np.sqrt(D) * np.log2(np.e)
    tiles = (n_len + BC - 1) // BC
    O = np.zeros((16, heads * D)); row_m = np.zeros((heads, 16)); row_il = np.zeros((heads, 16))
    eos_acc = np.zeros((32, 2))
    eos_tile, eos_nt, eos_t, eos_e = eos // BC, (eos % BC) // 8, (eos % 8) // 2, eos % 2

    def load_q(h):
        qf = [[[0.0]*8 for _ in range(KD)] for _ in range(32)]
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            for kk in range(KD):
                for half in range(2):
                    for col in range(2):
                        d = kk*16 + 2*t + 8*col
                        reg = half + 2*col
                        qf[lane][kk][2*reg:2*reg+2] = q[g + 8*half, h*D + d:h*D + d + 2]
        return qf

    def tile_smem(x, kt, h):
        s = np.zeros((BC, D + 8))
        for j in range(BC):
            if kt + j < n_len:
                s[j, :D] = x[kt + j, h*D:(h+1)*D]
        return s

    def scores(qf, ks, kt):
        s = [[[0.0]*4 for _ in range(NT)] for _ in range(32)]
        for nt in range(NT):
            c = [[0.0]*4 for _ in range(32)]
            for kk in range(KD):
                bel = []
                for lane in range(32):
                    g, t = lane >> 2, lane & 3
                    row = nt*8 + g
                    bel.append(list(ks[row, kk*16 + 2*t:kk*16 + 2*t + 2]) + list(ks[row, kk*16 + 8 + 2*t:kk*16 + 8 + 2*t + 2]))
                mma(c, [qf[l][kk] for l in range(32)], bel)
            for lane in range(32):
                t = lane & 3
                for e in range(2):
                    n = kt + nt*8 + 2*t + e
                    add = -np.inf if n >= n_len else 0.0
                    s[lane][nt][e] = c[lane][e]*scale_log2 + add
                    s[lane][nt][e+2] = c[lane][e+2]*scale_log2 + add
        return s

    for h in range(heads):
        qf = load_q(h)
        o = [[[0.0]*4 for _ in range(DT)] for _ in range(32)]
        mrow = np.full((32, 2), -np.inf); lrow = np.zeros((32, 2)); eos_x = np.full((32, 2), -np.inf)
        for it in range(tiles):
            kt = it*BC
            ks, vs = tile_smem(k, kt, h), tile_smem(v, kt, h)
            s = scores(qf, ks, kt)
            for lane in range(32):
                if it == eos_tile and (lane & 3) == eos_t:
                    eos_x[lane] = [s[lane][eos_nt][eos_e], s[lane][eos_nt][eos_e + 2]]
            for half in range(2):
                for quad in range(8):
                    lanes = range(4*quad, 4*quad + 4)
                    mx = max(max(s[l][nt][2*half], s[l][nt][2*half+1]) for l in lanes for nt in range(NT))
                    for l in lanes:
                        mnew = max(mrow[l][half], mx)
                        base = 0.0 if mnew == -np.inf else mnew
                        corr = 2.0 ** (mrow[l][half] - base)
                        mrow[l][half] = mnew
                        tot = 0.0
                        for nt in range(NT):
                            for e in (2*half, 2*half+1):
                                s[l][nt][e] = 2.0 ** (s[l][nt][e] - base); tot += s[l][nt][e]
                        lrow[l][half] = lrow[l][half]*corr + tot
                        for dt in range(DT):
                            o[l][dt][2*half] *= corr; o[l][dt][2*half+1] *= corr
            for kk in range(BC // 16):
                pa = []
                for lane in range(32):
                    pa.append([s[lane][2*kk][0], s[lane][2*kk][1], s[lane][2*kk][2], s[lane][2*kk][3],
                               s[lane][2*kk+1][0], s[lane][2*kk+1][1], s[lane][2*kk+1][2], s[lane][2*kk+1][3]])
                pa = [list(np.float16(x)) for x in pa]
                for dp in range(DT // 2):
                    def addr(lane, kk=kk, dp=dp):
                        mi = lane >> 3
                        return (kk*16 + (lane & 7) + 8*(mi & 1), dp*16 + 8*(mi >> 1))
                    vb = ldmatrix_x4_trans(vs, D + 8, addr)
                    c0 = [o[l][2*dp] for l in range(32)]; c1 = [o[l][2*dp+1] for l in range(32)]
                    mma(c0, pa, [list(vb[l][0]) + list(vb[l][1]) for l in range(32)])
                    mma(c1, pa, [list(vb[l][2]) + list(vb[l][3]) for l in range(32)])
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            for half in range(2):
                l = sum(lrow[4*(lane >> 2) + u][half] for u in range(4))
                il = 1/l if l > 0 else 0.0
                row = g + 8*half
                if t == 0:
                    row_m[h, row] = 0.0 if mrow[lane][half] == -np.inf else mrow[lane][half]; row_il[h, row] = il
                if t == eos_t:
                    eos_acc[lane][half] += 2.0 ** (eos_x[lane][half] - (0.0 if mrow[lane][half] == -np.inf else mrow[lane][half])) * il
                for dt in range(DT):
                    O[row, h*D + dt*8 + 2*t] = o[lane][dt][2*half]*il
                    O[row, h*D + dt*8 + 2*t + 1] = o[lane][dt][2*half+1]*il
    col = np.zeros(16)
    for lane in range(32):
        if (lane & 3) == eos_t:
            col[lane >> 2] = eos_acc[lane][0]/heads; col[(lane >> 2) + 8] = eos_acc[lane][1]/heads
    # sweep 2
    sumsq = np.zeros((32, 2))
    for it in range(tiles * heads):
        kt, h = (it // heads)*BC, it % heads
        if h == 0:
            acc = [[[0.0]*4 for _ in range(NT)] for _ in range(32)]
        s = scores(load_q(h), tile_smem(k, kt, h), kt)
        for lane in range(32):
            g = lane >> 2
            for half in range(2):
                mh, il = row_m[h, g + 8*half], row_il[h, g + 8*half]
                for nt in range(NT):
                    for e in (2*half, 2*half+1):
                        acc[lane][nt][e] += 2.0 ** (s[lane][nt][e] - mh) * il
        if h == heads - 1:
            for lane in range(32):
                for nt in range(NT):
                    sumsq[lane][0] += acc[lane][nt][0]**2 + acc[lane][nt][1]**2
                    sumsq[lane][1] += acc[lane][nt][2]**2 + acc[lane][nt][3]**2
    sp = np.zeros(16)
    for lane in range(0, 32, 4):
        for half in range(2):
            ss = sum(sumsq[lane + u][half] for u in range(4))
            sp[(lane >> 2) + 8*half] = heads*heads/ss
    return O, sp, col


def reference(q, k, v, heads, eos):
    O = np.zeros((16, heads*D)); mean = np.zeros((16, k.shape[0]))
    for h in range(heads):
        x = q[:, h*D:(h+1)*D] @ k[:, h*D:(h+1)*D].T / np.sqrt(D)
        p = np.exp(x - x.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
        O[:, h*D:(h+1)*D] = p @ v[:, h*D:(h+1)*D]; mean += p/heads
    return O, 1/(mean**2).sum(1), mean[:, eos]


for heads, n, eos in [(2, 77, 76), (3, 130, 70)]:
    q = rng.uniform(-1.5, 1.5, (16, heads*D)); k = rng.uniform(-1.5, 1.5, (n, heads*D)); v = rng.uniform(-1, 1, (n, heads*D))
    q, k, v = (x.astype(np.float16).astype(np.float64) for x in (q, k, v))
    O, s, c = warp(q, k, v, heads, eos, n)
    Or, sr, cr = reference(q, k, v, heads, eos)
    rel = lambda a, b: np.linalg.norm(a - b)/np.linalg.norm(b)
    print(f"heads {heads} keys {n} eos {eos}: O {rel(O, Or):.2e}  s {rel(s, sr):.2e}  c {rel(c, cr):.2e}")
    assert rel(O, Or) < 2e-3 and rel(s, sr) < 1e-6 and rel(c, cr) < 1e-6
print("emulated warp matches float64")
