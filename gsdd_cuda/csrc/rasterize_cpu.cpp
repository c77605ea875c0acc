// CPU kernels of gsdd::rasterize_fwd / rasterize_bwd / project (docs/rasterizer.md).
//
// The math is gsdd_math.h, the very functions the CUDA kernels call. This file only schedules it:
//
// * Forward: one work item per (image, tile row) — a band of 16 pixel rows, the tiles of the GPU
//   grid taken a row at a time — run in parallel with at::parallel_for. A band walks its image's
//   Gaussians in id order; each Gaussian touches the pixels of its tile box inside the band, and
//   within a pixel row only the columns whose samples can pass the 1/255 cut-off (a conservative
//   "span", see Spans below). Each pixel's sum is in Gaussian-id order: deterministic.
// * Backward: Gaussian-parallel, no atomics. One work item per Gaussian sums its contributions
//   over the same pixels in a fixed order (lane-wise over L consecutive pixels, then the lanes in
//   order), so gradients are bit-identical run to run and for any thread count.
//
// Inner loops run over the pixels of a row with no loop-carried floating-point dependence (the
// backward keeps L lane accumulators), so the compiler vectorizes them; e^{-σ} is the branch-free
// exp_fast_host there, and the rare pixel with a sample within near_band of a threshold is redone
// with the accurate exp afterwards.
#include "cpu_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "gsdd_math.h"

namespace gsdd::cpu {
namespace {

// Row loops run over whole chunks of kLanes pixels (one 256-bit vector of T; the padding pixels
// are computed and discarded), so the vectorized loop body does all the work and no scalar
// remainder loop runs; the backward's accumulators have kLanes lanes. Flags are int32, the width
// of float, so the vectorization factor is kLanes<float> and not that of a byte array.
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;  // built with AVX-512 (GSDD_CPU_FLAGS): one 512-bit vector
#else
constexpr int kVecBytes = 32;
#endif
template <typename T> constexpr int kLanes = kVecBytes / sizeof(T);
template <typename T> inline int padded(int n) { return (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>; }
// The row loops are kept out of line: the vectorizer handles them reliably on their own (inlined
// into their callers, GCC 12 left the backward's loop scalar).
#if defined(__GNUC__)
#define GSDD_NOINLINE __attribute__((noinline))
#else
#define GSDD_NOINLINE
#endif

// One vector of kLanes<T> lanes (GCC/Clang vector extension): the backward's lane accumulators.
template <typename T> struct LaneVec;
template <> struct LaneVec<float> { typedef float type __attribute__((vector_size(kVecBytes))); };
template <> struct LaneVec<double> { typedef double type __attribute__((vector_size(kVecBytes))); };

// acc[k·L .. k·L + L) += Σ over chunks of vals[k·stride ..] for k < 6 (n_pad a multiple of L):
// lane-wise, in registers, one pass.
template <typename T>
inline void lane_sums6(T* __restrict__ acc, const T* __restrict__ vals, int stride, int n_pad) {
  using V = typename LaneVec<T>::type;
  constexpr int L = kLanes<T>;
  V s[6], v;
  for (int k = 0; k < 6; ++k) std::memcpy(&s[k], acc + k * L, sizeof(V));
  for (int t0 = 0; t0 < n_pad; t0 += L) {
    for (int k = 0; k < 6; ++k) {
      std::memcpy(&v, vals + k * stride + t0, sizeof(V));
      s[k] += v;
    }
  }
  for (int k = 0; k < 6; ++k) std::memcpy(acc + k * L, &s[k], sizeof(V));
}

// acc[0 .. L) += Σ over chunks of x·y (no FMA: -ffp-contract=off).
template <typename T>
inline void lane_dot(T* __restrict__ acc, const T* __restrict__ x, const T* __restrict__ y, int n_pad) {
  using V = typename LaneVec<T>::type;
  V s, u, v;
  std::memcpy(&s, acc, sizeof(V));
  for (int t0 = 0; t0 < n_pad; t0 += kLanes<T>) {
    std::memcpy(&u, x + t0, sizeof(V));
    std::memcpy(&v, y + t0, sizeof(V));
    s += u * v;
  }
  std::memcpy(acc, &s, sizeof(V));
}

template <typename T> constexpr double unit_roundoff() { return std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53; }

// ------------------------------------------------------------------------------------ spans ---
// Which samples of a row can pass w >= 1/255, computed conservatively in double from the float
// conic. The kernel evaluates σ_f, the rounded σ of sigma_of(); with u the unit roundoff,
// |σ_f − σ| <= 5u·A where A = ½Q11Δx² + ½Q22Δy² + |Q12ΔxΔy| <= K·σ for a positive definite Q,
// K = (Q11 + Q22)² / det Q. A sample with exact σ > thi = cut / (1 − 8uK) therefore has σ_f > cut
// and is dropped (cut_sigma). Completing the square in Δx, {Δx : σ(Δx, Δy) <= thi} is the interval
// −(Q12/Q11)Δy ± sqrt(2·thi/Q11 − Δy²·det Q/Q11²); in sample x = px − Δx it is centred on
// px + (Q12/Q11)Δy. The two constants are widened by 1e-9 (relative), far more than the double
// rounding of this arithmetic (< 1e-15·K, with K < 2^21 here), and the pixel range by one pixel
// plus the rounding of Δx = px − sx. Gaussians for which the bound is unusable (Q not positive
// definite, 8uK >= ½, infinite cut) get no spans: every pixel of their tile box is evaluated,
// which is exact by construction.
template <typename T>
struct Spans {
  bool full = true;
  double px = 0, rc = 0, a = 0, bc = 0, pad = 0, ymax = 0;
};

template <typename T>
Spans<T> make_spans(const Projected<T>& g, T cut) {
  Spans<T> sp;
  const double q11 = g.q11, q12 = g.q12, q22 = g.q22;
  const double detq = q11 * q22 - q12 * q12;
  if (!(q11 > 0 && q22 > 0 && detq > 0)) return sp;
  const double k = (q11 + q22) * (q11 + q22) / detq;
  const double gk = 8.0 * unit_roundoff<T>() * k;
  const double c = std::max(static_cast<double>(cut), 0.0);
  if (!(gk < 0.5) || !std::isfinite(c) || !std::isfinite(k)) return sp;
  const double thi = (c + 1e-6) / (1.0 - gk);
  sp.full = false;
  sp.px = g.px;
  sp.rc = q12 / q11;
  sp.a = 2.0 * thi / q11 * (1.0 + 1e-9);
  sp.bc = detq / (q11 * q11) * (1.0 - 1e-9);
  sp.pad = 1.0 + 4.0 * unit_roundoff<T>() * std::abs(static_cast<double>(g.px));
  // rows: the interval is empty once Δy² > a / bc
  sp.ymax = std::sqrt(sp.a / sp.bc) + 1.0 + 4.0 * unit_roundoff<T>() * std::abs(static_cast<double>(g.py));
  return sp;
}

// Pixel columns [lo[i], hi[i]) ⊂ [col0, col1) of the pixel rows r0 + i, i < rows, whose samples
// may pass (empty when lo >= hi), as doubles holding integers. Branch-free over the rows, so the
// compiler vectorizes it (sqrt, ceil, floor in double lanes).
template <typename T, bool AA>
GSDD_NOINLINE void span_rows(const Spans<T>& sp, T py, int r0, int rows, int col0, int col1, double* __restrict__ lo,
                             double* __restrict__ hi) {
  const double c0 = col0, c1 = col1;
  if (sp.full) {
    for (int i = 0; i < rows; ++i) {
      lo[i] = c0;
      hi[i] = c1;
    }
    return;
  }
  const double inf = std::numeric_limits<double>::infinity();
  const double a = sp.a, bc = sp.bc, px = sp.px, rc = sp.rc, pad = sp.pad;
  for (int i = 0; i < rows; ++i) {
    double l = inf, h = -inf;
    for (int k = 0; k < Samples<AA>::S; ++k) {
      // the row's sample offset as the kernel computes it (rounded in T), then exact in double
      const double d = static_cast<double>(sub_rn(py, add_rn(static_cast<T>(r0 + i), static_cast<T>(Samples<AA>::off(k)))));
      const double h2 = a - d * d * bc;
      const double w = std::sqrt(h2 > 0.0 ? h2 : 0.0);
      const double c = px + rc * d;
      l = h2 >= 0.0 ? std::min(l, c - w) : l;
      h = h2 >= 0.0 ? std::max(h, c + w) : h;
    }
    // pixel j holds samples in [j, j + 1]: keep j with j + 1 >= l − pad and j <= h + pad
    lo[i] = std::max(std::ceil(l - pad - 1.0), c0);
    hi[i] = std::min(std::floor(h + pad) + 1.0, c1);
  }
}

// Pixel rows [r0, r1) ⊂ [row0, row1) that may hold passing samples.
template <typename T>
void clip_rows(const Spans<T>& sp, const Projected<T>& g, int& r0, int& r1) {
  if (sp.full) return;
  const double py = g.py;
  const double lo = r0, hi = r1;
  const double first = std::floor(py - sp.ymax - 1.0), last = std::ceil(py + sp.ymax) + 1.0;
  r0 = static_cast<int>(std::min(std::max(first, lo), hi));  // clamped before the conversion
  r1 = static_cast<int>(std::min(std::max(last, lo), hi));
}

// Which exp a Gaussian's pixels use: float only takes the fast paths (while σ < 80 covers every
// sample that can pass), and the unclamped one when o < 1.
template <typename T>
inline ExpMode exp_mode(T o, T cut) {
  if (!std::is_same_v<T, float> || !fast_exp_ok(cut)) return ExpMode::kAccurate;
  return o < T(1) ? ExpMode::kFastUnclamped : ExpMode::kFast;
}

template <typename T, bool AA>
void sample_dy(const Projected<T>& g, int row, T (&dy)[Samples<AA>::S]) {
  GSDD_UNROLL
  for (int k = 0; k < Samples<AA>::S; ++k) {
    dy[k] = sub_rn(g.py, add_rn(static_cast<T>(row), static_cast<T>(Samples<AA>::off(k))));
  }
}

// A row loop's inputs copied into locals, so the loop's stores (restrict pointers) cannot alias them.
template <typename T, bool AA>
struct RowInputs {
  Projected<T> g;
  T dy[Samples<AA>::S];
  RowInputs(const Projected<T>& g_in, const T (&dy_in)[Samples<AA>::S]) : g(g_in) {
    for (int k = 0; k < Samples<AA>::S; ++k) dy[k] = dy_in[k];
  }
};

template <typename T, bool AA>
inline void sample_dx(const Projected<T>& g, int col, T (&dx)[Samples<AA>::S]) {
  GSDD_UNROLL
  for (int k = 0; k < Samples<AA>::S; ++k) {
    dx[k] = sub_rn(g.px, add_rn(static_cast<T>(col), static_cast<T>(Samples<AA>::off(k))));
  }
}

// ---------------------------------------------------------------------------------- forward ---
// Σ_s w of pixels j0 .. j0+n_pad−1 of one row into wrow (pixels >= n are padding: computed, not
// used), close calls flagged in nrow. Returns whether any pixel was flagged (padding included: the
// caller's fix-up looks at the first n only). The loop is vectorized (no branches, no condition
// on t, no carried float dependence).
template <typename T, bool AA, ExpMode M>
GSDD_NOINLINE bool forward_row(const Projected<T>& g, T o, const T (&dy)[Samples<AA>::S], int j0, int n_pad,
                               T* __restrict__ wrow, int32_t* __restrict__ nrow) {
  const RowInputs<T, AA> r(g, dy);
  int32_t any = 0;
  for (int t = 0; t < n_pad; ++t) {
    T dx[Samples<AA>::S];
    sample_dx<T, AA>(r.g, j0 + t, dx);
    bool near;
    wrow[t] = pixel_weight<T, AA, M>(dx, r.dy, r.g.q11, r.g.q12, r.g.q22, o, near);
    const int32_t f = near ? 1 : 0;
    nrow[t] = f;
    any |= f;
  }
  return any != 0;
}

template <typename T>
struct Inputs {
  const T *xy, *chol, *rgb, *opacity;
  int64_t num_images, n, channels;
  int height, width;
};

// Per-thread buffers of the forward: one pixel row's weights and flags, the band's accumulator
// [C][16][W + L] (rows padded so whole vectors can be added), the rows' column ranges.
template <typename T>
struct BandScratch {
  int stride;
  std::vector<T> wrow, band;
  std::vector<int32_t> nrow;
  std::vector<double> lo, hi;
  BandScratch(int width, int64_t channels)
      : stride(width + kLanes<T>),
        wrow(static_cast<size_t>(stride)),
        band(static_cast<size_t>(channels) * kTile * stride),
        nrow(static_cast<size_t>(stride)),
        lo(kTile),
        hi(kTile) {}
};

template <typename T, bool AA>
void forward_band(const Inputs<T>& in, int64_t b, int ty, T* out, BandScratch<T>& sc) {
  const int H = in.height, W = in.width;
  const int64_t C = in.channels;
  const int row0 = ty * kTile, row1 = std::min(H, row0 + kTile);
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int st = sc.stride;
  std::fill(sc.band.begin(), sc.band.end(), T(0));
  T* wrow = sc.wrow.data();
  int32_t* nrow = sc.nrow.data();
  for (int64_t i = 0; i < in.n; ++i) {
    const int64_t gid = b * in.n + i;
    Projected<T> g;
    T o;
    if (!visible_gaussian(in.xy, in.chol, in.opacity, gid, H, W, AA, g, o)) continue;
    if (ty < g.y0 || ty >= g.y1 || g.x0 >= g.x1) continue;
    const int col0 = g.x0 * kTile, col1 = std::min(W, g.x1 * kTile);
    const T cut = cut_sigma(o);
    const Spans<T> sp = make_spans(g, cut);
    const ExpMode mode = exp_mode(o, cut);
    int r0 = row0, r1 = row1;
    clip_rows(sp, g, r0, r1);
    if (r0 >= r1) continue;
    span_rows<T, AA>(sp, g.py, r0, r1 - r0, col0, col1, sc.lo.data(), sc.hi.data());
    const T* col = in.rgb + gid * C;
    for (int row = r0; row < r1; ++row) {
      if (!(sc.lo[row - r0] < sc.hi[row - r0])) continue;
      const int j0 = static_cast<int>(sc.lo[row - r0]), j1 = static_cast<int>(sc.hi[row - r0]);
      T dy[Samples<AA>::S];
      sample_dy<T, AA>(g, row, dy);
      const int n = j1 - j0, n_pad = padded<T>(n);
      bool any;
      switch (mode) {
        case ExpMode::kFastUnclamped:
          any = forward_row<T, AA, ExpMode::kFastUnclamped>(g, o, dy, j0, n_pad, wrow, nrow);
          break;
        case ExpMode::kFast:
          any = forward_row<T, AA, ExpMode::kFast>(g, o, dy, j0, n_pad, wrow, nrow);
          break;
        default:
          any = forward_row<T, AA, ExpMode::kAccurate>(g, o, dy, j0, n_pad, wrow, nrow);
      }
      if (any) {  // close calls: the accurate exp decides (rare)
        for (int t = 0; t < n; ++t) {
          if (!nrow[t]) continue;
          T dx[Samples<AA>::S];
          sample_dx<T, AA>(g, j0 + t, dx);
          bool near;
          wrow[t] = pixel_weight<T, AA, ExpMode::kAccurate>(dx, dy, g.q11, g.q12, g.q22, o, near);
        }
      }
      for (int t = n; t < n_pad; ++t) wrow[t] = T(0);  // padding adds exact zeros
      for (int64_t c = 0; c < C; ++c) {
        T* __restrict__ brow = sc.band.data() + (c * kTile + (row - row0)) * st + j0;
        const T cc = col[c];
        const T* __restrict__ w = wrow;
        for (int t = 0; t < n_pad; ++t) brow[t] = brow[t] + w[t] * cc;
      }
    }
  }
  // the band into the output: the mean over the sub-samples (×¼ with antialiasing)
  for (int64_t c = 0; c < C; ++c) {
    for (int row = row0; row < row1; ++row) {
      const T* __restrict__ src = sc.band.data() + (c * kTile + (row - row0)) * st;
      T* __restrict__ dst = out + (b * C + c) * plane + static_cast<int64_t>(row) * W;
      if (AA) {
        for (int t = 0; t < W; ++t) dst[t] = src[t] * T(0.25);
      } else {
        for (int t = 0; t < W; ++t) dst[t] = src[t];
      }
    }
  }
}

template <typename T, bool AA>
void forward(const Inputs<T>& in, T* out) {
  const int tiles_y = (in.height + kTile - 1) / kTile;
  const int64_t items = in.num_images * tiles_y;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    BandScratch<T> sc(in.width, in.channels);
    for (int64_t item = begin; item < end; ++item) {
      forward_band<T, AA>(in, item / tiles_y, static_cast<int>(item % tiles_y), out, sc);
    }
  });
}

// --------------------------------------------------------------------------------- backward ---
template <typename T>
struct Scratch {
  int stride;                 // padded row length (a multiple of the lane count)
  std::vector<T> gs;          // [C][stride] upstream gradient per sample (G / samples per pixel)
  std::vector<T> a;           // [stride] a = Σ_c c_c·gs_c
  std::vector<T> wrow;        // [stride] Σ_s w per pixel
  std::vector<T> vals;        // [6][stride] geometric gradient values per pixel
  std::vector<int32_t> nrow;  // [stride] close-call flags
  std::vector<T> acc;         // [6 + C][L] lane accumulators
  std::vector<double> lo, hi;  // [H] column range per pixel row (span_rows)
  Scratch(int width, int height, int64_t channels)
      : stride(padded<T>(width)),
        gs(static_cast<size_t>(channels) * stride),
        a(stride),
        wrow(stride),
        vals(static_cast<size_t>(6) * stride),
        nrow(stride),
        acc(static_cast<size_t>(6 + channels) * kLanes<T>),
        lo(static_cast<size_t>(height)),
        hi(static_cast<size_t>(height)) {}
};

// Per-pixel backward values of pixels j0 .. j0+n_pad−1 of one row: the six geometric gradient
// values into vals[k·stride + t] and Σ_s w into wrow; close calls flagged in nrow. The caller
// zeroes the padding (t >= n) afterwards and ignores its flags. Returns whether any pixel was
// flagged. Vectorized like the forward's row loop (no condition on t inside, one restrict pointer
// per output row); the reduction over pixels happens afterwards, lane-wise (backward_gaussian).
template <typename T, bool AA, ExpMode M>
GSDD_NOINLINE bool backward_row(const Projected<T>& g, T o, const T (&dy)[Samples<AA>::S], int j0, int n_pad,
                                const T* __restrict__ a, T* __restrict__ v0, T* __restrict__ v1,
                                T* __restrict__ v2, T* __restrict__ v3, T* __restrict__ v4, T* __restrict__ v5,
                                T* __restrict__ wrow, int32_t* __restrict__ nrow) {
  const RowInputs<T, AA> r(g, dy);
  int32_t any = 0;
  for (int t = 0; t < n_pad; ++t) {
    T dx[Samples<AA>::S];
    sample_dx<T, AA>(r.g, j0 + t, dx);
    bool nr;
    const PixelGrad<T> pg = pixel_grad<T, AA, M>(dx, r.dy, r.g.q11, r.g.q12, r.g.q22, o, nr);
    const GradValues<T> v = pixel_grad_values(pg, a[t]);
    v0[t] = v.px;
    v1[t] = v.py;
    v2[t] = v.q11;
    v3[t] = v.q12;
    v4[t] = v.q22;
    v5[t] = v.o;
    wrow[t] = pg.wsum;
    const int32_t f = nr ? 1 : 0;
    nrow[t] = f;
    any |= f;
  }
  return any != 0;
}

template <typename T, bool AA>
void backward_gaussian(const Inputs<T>& in, const T* v_out, int64_t gid, Scratch<T>& sc, T* v_xy, T* v_chol, T* v_rgb,
                       T* v_opacity) {
  constexpr int L = kLanes<T>;
  const int H = in.height, W = in.width;
  const int64_t C = in.channels;
  const int64_t b = gid / in.n;
  v_xy[2 * gid] = v_xy[2 * gid + 1] = T(0);
  v_chol[3 * gid] = v_chol[3 * gid + 1] = v_chol[3 * gid + 2] = T(0);
  v_opacity[gid] = T(0);
  for (int64_t c = 0; c < C; ++c) v_rgb[gid * C + c] = T(0);
  Projected<T> g;
  T o;
  if (!visible_gaussian(in.xy, in.chol, in.opacity, gid, H, W, AA, g, o)) return;
  if (g.x0 >= g.x1 || g.y0 >= g.y1) return;
  const int col0 = g.x0 * kTile, col1 = std::min(W, g.x1 * kTile);
  int r0 = g.y0 * kTile, r1 = std::min(H, g.y1 * kTile);
  const T cut = cut_sigma(o);
  const Spans<T> sp = make_spans(g, cut);
  const ExpMode mode = exp_mode(o, cut);
  clip_rows(sp, g, r0, r1);
  if (r0 >= r1) return;
  span_rows<T, AA>(sp, g.py, r0, r1 - r0, col0, col1, sc.lo.data(), sc.hi.data());
  const T scale = AA ? T(0.25) : T(1);
  const T* col = in.rgb + gid * C;
  const int64_t plane = static_cast<int64_t>(H) * W;
  T* acc = sc.acc.data();
  std::fill(sc.acc.begin(), sc.acc.end(), T(0));
  for (int row = r0; row < r1; ++row) {
    if (!(sc.lo[row - r0] < sc.hi[row - r0])) continue;
    const int j0 = static_cast<int>(sc.lo[row - r0]), j1 = static_cast<int>(sc.hi[row - r0]);
    T dy[Samples<AA>::S];
    sample_dy<T, AA>(g, row, dy);
    const int n = j1 - j0, n_pad = padded<T>(n);
    // upstream gradient per sample gs_c = G_c·¼ (zero-padded to whole chunks) and a = Σ_c c_c·gs_c,
    // summed over the channels in order (a starts as c_0·gs_0)
    T* __restrict__ a = sc.a.data();
    for (int64_t c = 0; c < C; ++c) {
      T* __restrict__ gs = sc.gs.data() + c * sc.stride;
      const T* __restrict__ src = v_out + (b * C + c) * plane + static_cast<int64_t>(row) * W + j0;
      const T cc = col[c];
      if (c == 0) {
        for (int t = 0; t < n; ++t) {
          const T gv = src[t] * scale;
          gs[t] = gv;
          a[t] = cc * gv;
        }
      } else {
        for (int t = 0; t < n; ++t) {
          const T gv = src[t] * scale;
          gs[t] = gv;
          a[t] = a[t] + cc * gv;
        }
      }
      for (int t = n; t < n_pad; ++t) gs[t] = T(0);
    }
    for (int t = n; t < n_pad; ++t) a[t] = T(0);
    T* wrow = sc.wrow.data();
    T* vals = sc.vals.data();
    int32_t* nrow = sc.nrow.data();
    const int st = sc.stride;
    T* const v[6] = {vals, vals + st, vals + 2 * st, vals + 3 * st, vals + 4 * st, vals + 5 * st};
    bool any;
    switch (mode) {
      case ExpMode::kFastUnclamped:
        any = backward_row<T, AA, ExpMode::kFastUnclamped>(g, o, dy, j0, n_pad, a, v[0], v[1], v[2], v[3], v[4],
                                                            v[5], wrow, nrow);
        break;
      case ExpMode::kFast:
        any = backward_row<T, AA, ExpMode::kFast>(g, o, dy, j0, n_pad, a, v[0], v[1], v[2], v[3], v[4], v[5], wrow,
                                                   nrow);
        break;
      default:
        any = backward_row<T, AA, ExpMode::kAccurate>(g, o, dy, j0, n_pad, a, v[0], v[1], v[2], v[3], v[4], v[5],
                                                       wrow, nrow);
    }
    for (int t = n; t < n_pad; ++t) {  // padding pixels: no contribution, no close call
      for (int k = 0; k < 6; ++k) vals[k * st + t] = T(0);
      wrow[t] = T(0);
      nrow[t] = 0;
    }
    if (any) {  // close calls: the accurate exp decides (rare)
      for (int t = 0; t < n; ++t) {
        if (!nrow[t]) continue;
        T dx[Samples<AA>::S];
        sample_dx<T, AA>(g, j0 + t, dx);
        bool nr;
        const PixelGrad<T> pg = pixel_grad<T, AA, ExpMode::kAccurate>(dx, dy, g.q11, g.q12, g.q22, o, nr);
        const GradValues<T> v = pixel_grad_values(pg, a[t]);
        const T vk[6] = {v.px, v.py, v.q11, v.q12, v.q22, v.o};
        for (int k = 0; k < 6; ++k) vals[k * st + t] = vk[k];
        wrow[t] = pg.wsum;
      }
    }
    // geometric values and colour (Σ wsum·gs_c): Σ over the row's pixels, lane-wise
    lane_sums6(acc, vals, st, n_pad);
    for (int64_t c = 0; c < C; ++c) lane_dot(acc + (6 + c) * L, wrow, sc.gs.data() + c * st, n_pad);
  }
  // lanes in a fixed order
  T sums[6];
  for (int k = 0; k < 6; ++k) {
    T s = T(0);
    for (int l = 0; l < L; ++l) s += acc[k * L + l];
    sums[k] = s;
  }
  for (int64_t c = 0; c < C; ++c) {
    T s = T(0);
    for (int l = 0; l < L; ++l) s += acc[(6 + c) * L + l];
    v_rgb[gid * C + c] = s;
  }
  const T geo[5] = {sums[0], sums[1], sums[2], sums[3], sums[4]};
  T gxy[2], gchol[3];
  chain_rule(geo, in.chol[3 * gid], in.chol[3 * gid + 1], in.chol[3 * gid + 2], AA, H, W, gxy, gchol);
  v_xy[2 * gid] = gxy[0];
  v_xy[2 * gid + 1] = gxy[1];
  v_chol[3 * gid] = gchol[0];
  v_chol[3 * gid + 1] = gchol[1];
  v_chol[3 * gid + 2] = gchol[2];
  v_opacity[gid] = sums[5];
}

template <typename T, bool AA>
void backward(const Inputs<T>& in, const T* v_out, T* v_xy, T* v_chol, T* v_rgb, T* v_opacity) {
  at::parallel_for(0, in.num_images * in.n, 1, [&](int64_t begin, int64_t end) {
    // wrow is indexed up to the padded row length, a and gs too
    Scratch<T> sc(in.width, in.height, in.channels);
    for (int64_t gid = begin; gid < end; ++gid) {
      backward_gaussian<T, AA>(in, v_out, gid, sc, v_xy, v_chol, v_rgb, v_opacity);
    }
  });
}

}  // namespace

// ------------------------------------------------------------------------------ entry points ---
template <typename T>
void rasterize_fwd(const T* xy, const T* chol, const T* rgb, const T* opacity, int64_t num_images, int64_t n,
                   int64_t channels, int height, int width, bool antialias, T* out) {
  const Inputs<T> in{xy, chol, rgb, opacity, num_images, n, channels, height, width};
  if (antialias) {
    forward<T, true>(in, out);
  } else {
    forward<T, false>(in, out);
  }
}

template <typename T>
void rasterize_bwd(const T* v_out, const T* xy, const T* chol, const T* rgb, const T* opacity, int64_t num_images,
                   int64_t n, int64_t channels, int height, int width, bool antialias, T* v_xy, T* v_chol, T* v_rgb,
                   T* v_opacity) {
  const Inputs<T> in{xy, chol, rgb, opacity, num_images, n, channels, height, width};
  if (antialias) {
    backward<T, true>(in, v_out, v_xy, v_chol, v_rgb, v_opacity);
  } else {
    backward<T, false>(in, v_out, v_xy, v_chol, v_rgb, v_opacity);
  }
}

template <typename T>
void project(const T* xy, const T* chol, int64_t count, int height, int width, bool antialias, T* p, T* conic,
             int32_t* box) {
  at::parallel_for(0, count, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Projected<T> g;
      project_gaussian(xy[2 * i], xy[2 * i + 1], chol[3 * i], chol[3 * i + 1], chol[3 * i + 2], height, width,
                       antialias, g);
      store_projected(g, i, p, conic, box);
    }
  });
}

template void rasterize_fwd<float>(const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                   int, int, bool, float*);
template void rasterize_fwd<double>(const double*, const double*, const double*, const double*, int64_t, int64_t,
                                    int64_t, int, int, bool, double*);
template void rasterize_bwd<float>(const float*, const float*, const float*, const float*, const float*, int64_t,
                                   int64_t, int64_t, int, int, bool, float*, float*, float*, float*);
template void rasterize_bwd<double>(const double*, const double*, const double*, const double*, const double*,
                                    int64_t, int64_t, int64_t, int, int, bool, double*, double*, double*, double*);
template void project<float>(const float*, const float*, int64_t, int, int, bool, float*, float*, int32_t*);
template void project<double>(const double*, const double*, int64_t, int, int, bool, double*, double*, int32_t*);

}  // namespace gsdd::cpu
