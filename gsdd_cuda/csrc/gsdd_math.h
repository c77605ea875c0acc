// The rasterizer's math, written once for both devices (docs/rasterizer.md, "One copy of the math").
//
// Included by the CPU kernels (rasterize_cpu.cpp, any C++17 compiler, no CUDA toolkit) and by the
// CUDA kernels (rasterize_fwd.cu, rasterize_bwd.cu). Everything here is a header-only function of
// scalars: the projection (Σ' = LLᵀ + s·I with the 1/16 floor, conic, radius, tile box), σ, the
// per-sample cut-offs and every derivative, including the chain rule back to (xy, L).
//
// Exactness. Every keep/drop decision (tile box, σ < 0, w = min(1, o·e^{−σ}) < 1/255, and which
// side of the clamp at 1 a sample is on) must be the reference's (gsdd_cli/render/reference.py).
// The projection and σ are therefore written in the reference's operation order with explicitly
// rounded operations: on the device the _rn intrinsics (nvcc cannot contract them into FMAs), on
// the host plain IEEE operators compiled with -ffp-contract=off (gsdd_cuda/_build.py), which round
// identically. The one transcendental in a decision, e^{−σ}, is evaluated fast (__expf on the
// device, a vectorizable polynomial on the host); a sample whose o·e lies within kNearBand of 1/255
// or of 1 is recomputed with the accurate exp (expf on the device, as torch's CUDA exp; a correctly
// rounded float on the host), so the fast path never decides a close call.
//
// Functions have internal linkage (GSDD_FN is `static`), so the CPU library and the CUDA library,
// compiled with different flags, never share a copy.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define GSDD_FN static __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define GSDD_FN static __forceinline
#else
#define GSDD_FN static inline __attribute__((always_inline))
#endif

// Full unrolling of the tiny sample loops (S <= 2): on the host the vectorizer needs them gone.
#if defined(__CUDACC__) || defined(__clang__)
#define GSDD_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define GSDD_UNROLL _Pragma("GCC unroll 4")
#else
#define GSDD_UNROLL
#endif

namespace gsdd {

constexpr int kTile = 16;  // tile side in pixels (the tile box of the projection)

// ------------------------------------------------------------------------------ constants ----
// Python floats of the reference, rounded to T exactly as torch rounds a scalar operand.
template <typename T> GSDD_FN constexpr T alpha_min() { return T(1.0 / 255.0); }   // w cut-off
template <typename T> GSDD_FN constexpr T filter_var() { return T(1.0 / 12.0); }   // s (eq. 9)
template <typename T> GSDD_FN constexpr T min_var() { return T(1.0 / 16.0); }      // Σ' floor
template <typename T> GSDD_FN constexpr T lambda_floor() { return T(0.1); }        // radius floor
// Opacity below this can never give w >= 1/255 (w <= o·e^{-σ} <= o for σ >= 0, and every exp here
// returns <= 1 for a non-positive argument), so such a Gaussian is skipped before projection.
template <typename T> GSDD_FN constexpr T opacity_cull() { return T(0.999 / 255.0); }
// Relative distance of o·e^{-σ} to 1/255 or to 1 below which the fast exp's answer is recomputed
// with the accurate exp (the fast exps err by < 3e-7 relative on the host, < 1e-5 on the device).
template <typename T> GSDD_FN constexpr T near_band() { return T(3e-5); }

// ------------------------------------------------------------ rounded scalar operations ----
// On the device: the IEEE round-to-nearest intrinsics (nvcc cannot contract them into FMAs). On
// the host: plain operators and <cmath>; the CPU library is compiled with -ffp-contract=off, so
// a*b+c is two roundings there too.
#if defined(__CUDA_ARCH__)
#define GSDD_OP2(name, expr, fop, dop)                                        \
  GSDD_FN float name(float a, float b) { return fop(a, b); }                \
  GSDD_FN double name(double a, double b) { return dop(a, b); }
#define GSDD_OP1(name, expr, fop, dop)                                        \
  GSDD_FN float name(float a) { return fop(a); }                            \
  GSDD_FN double name(double a) { return dop(a); }
#else
#define GSDD_OP2(name, expr, fop, dop)                                        \
  GSDD_FN float name(float a, float b) { return expr; }                     \
  GSDD_FN double name(double a, double b) { return expr; }
#define GSDD_OP1(name, expr, fop, dop)                                        \
  GSDD_FN float name(float a) { return expr; }                              \
  GSDD_FN double name(double a) { return expr; }
#endif
GSDD_OP2(add_rn, a + b, __fadd_rn, __dadd_rn)
GSDD_OP2(sub_rn, a - b, __fsub_rn, __dsub_rn)
GSDD_OP2(mul_rn, a * b, __fmul_rn, __dmul_rn)
GSDD_OP1(rcp_rn, 1 / a, __frcp_rn, __drcp_rn)  // torch evaluates `1.0 / t` as reciprocal(t)
GSDD_OP1(sqrt_rn, std::sqrt(a), __fsqrt_rn, __dsqrt_rn)
GSDD_OP1(trunc_, std::trunc(a), truncf, ::trunc)
GSDD_OP1(ceil_, std::ceil(a), ceilf, ::ceil)
GSDD_OP1(log_, std::log(a), logf, ::log)
#undef GSDD_OP1
#undef GSDD_OP2

template <typename T> GSDD_FN bool finite_(T x) { return x - x == x - x; }  // false for inf, NaN

// torch.clamp(x, min=lo): NaN propagates (unlike fmaxf). Its derivative, in the reference's
// convention (reference._clamp_min), is 1 where x > lo and 0 elsewhere, the boundary included.
template <typename T> GSDD_FN T clamp_min(T x, T lo) { return x < lo ? lo : x; }

// ------------------------------------------------------------------------------------ exp ----
// kFast: the fast exp, close calls flagged (see eval_sample). kFastUnclamped: the same for a
// Gaussian with o < 1, host only: there every exp here gives e <= 1 for σ >= 0, so o·e < 1, the
// clamp at 1 is never reached and needs neither a min nor a close-call check. kAccurate: the
// accurate exp, no flags.
enum class ExpMode { kFast, kFastUnclamped, kAccurate };
template <ExpMode M> GSDD_FN constexpr bool is_fast() { return M != ExpMode::kAccurate; }

#if !defined(__CUDA_ARCH__)
// e^x for x in [-87, 0], float, branch-free so the compiler vectorizes the loops that call it.
// Cephes' expf: x = n·ln2 + r (Cody–Waite split of ln2), degree-5 polynomial in r, times 2^n.
// Relative error < 3e-7 (measured over the whole range in tests/cuda/test_cpu_kernels.py).
// exp_fast_host(0) == 1 exactly.
GSDD_FN float exp_fast_host(float x) {
  x = x > -87.0f ? x : -87.0f;  // also maps NaN to -87 (the caller drops such samples)
  x = x < 0.0f ? x : 0.0f;
  const float magic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const float y = (p * z + r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}
#endif

// e^{-s}. kFast: __expf (device) or exp_fast_host (host); kAccurate: expf (device, the function
// torch's CUDA exp calls) or the float rounding of the double exp (host, correctly rounded but
// for double-rounding ties). float64 always uses the library exp.
template <ExpMode M> GSDD_FN float exp_neg(float s) {
#if defined(__CUDA_ARCH__)
  return is_fast<M>() ? __expf(-s) : expf(-s);
#else
  return is_fast<M>() ? exp_fast_host(-s) : static_cast<float>(std::exp(-static_cast<double>(s)));
#endif
}
template <ExpMode M> GSDD_FN double exp_neg(double s) {
#if defined(__CUDA_ARCH__)
  return ::exp(-s);
#else
  return std::exp(-s);
#endif
}

// ----------------------------------------------------------------------------- projection ----
// What one Gaussian needs inside a tile, plus its tile box [x0, x1) × [y0, y1).
template <typename T>
struct Projected {
  T px, py;        // centre in pixels
  T q11, q12, q22;  // conic Q = Σ'^{-1}
  int x0, x1, y0, y1;
};

// torch.trunc(v).clamp(0, hi) then .to(int64); a NaN marks the box empty (torch's NaN-to-int
// gives a value outside every tile range, so the reference masks the Gaussian out).
template <typename T>
GSDD_FN int clamp_tile(T v, int hi, bool& nan) {
  T t = trunc_(v);
  if (!(t == t)) {
    nan = true;
    return 0;
  }
  t = t < T(0) ? T(0) : t;
  t = t > T(hi) ? T(hi) : t;
  return static_cast<int>(t);
}

// Pixel centre, conic and tile box, in the operation order of reference.project(). Returns false
// when the Gaussian cannot render anything: a non-finite centre or conic (every σ is then NaN or
// +inf in the reference too) or a NaN radius (the reference's box is then empty). An infinite
// radius is kept: its box is the whole image, as in the reference.
template <typename T>
GSDD_FN bool project_gaussian(T x, T y, T l11, T l21, T l22, int height, int width, bool antialias,
                              Projected<T>& g) {
  const T s = antialias ? filter_var<T>() : T(0);
  g.px = mul_rn(T(0.5) * static_cast<T>(width), add_rn(x, T(1)));
  g.py = mul_rn(T(0.5) * static_cast<T>(height), add_rn(y, T(1)));
  const T a = clamp_min(add_rn(mul_rn(l11, l11), s), min_var<T>());                        // Σ'11
  const T b = mul_rn(l11, l21);                                                           // Σ'12
  const T c = clamp_min(add_rn(add_rn(mul_rn(l21, l21), mul_rn(l22, l22)), s), min_var<T>());  // Σ'22
  const T det = sub_rn(mul_rn(a, c), mul_rn(b, b));
  const T inv = rcp_rn(det);
  g.q11 = mul_rn(c, inv);
  g.q12 = mul_rn(-b, inv);
  g.q22 = mul_rn(a, inv);
  const T half = mul_rn(T(0.5), add_rn(a, c));
  const T lam = add_rn(half, sqrt_rn(clamp_min(sub_rn(mul_rn(half, half), det), lambda_floor<T>())));
  const T r = ceil_(mul_rn(T(3), sqrt_rn(lam)));
  const int tiles_x = (width + kTile - 1) / kTile;
  const int tiles_y = (height + kTile - 1) / kTile;
  const T inv_tile = T(1) / T(kTile);  // exact power of two: x·(1/16) == x/16
  bool nan = false;
  g.x0 = clamp_tile(mul_rn(sub_rn(g.px, r), inv_tile), tiles_x, nan);
  g.x1 = clamp_tile(add_rn(mul_rn(add_rn(g.px, r), inv_tile), T(1)), tiles_x, nan);
  g.y0 = clamp_tile(mul_rn(sub_rn(g.py, r), inv_tile), tiles_y, nan);
  g.y1 = clamp_tile(add_rn(mul_rn(add_rn(g.py, r), inv_tile), T(1)), tiles_y, nan);
  const bool ok = finite_(g.px) && finite_(g.py) && finite_(g.q11) && finite_(g.q12) && finite_(g.q22) && !nan;
  if (!ok) g.x0 = g.x1 = g.y0 = g.y1 = 0;
  return ok;
}

// One row of gsdd::project's outputs: p [.., 2], conic [.., 3], box [.., 4].
template <typename T>
GSDD_FN void store_projected(const Projected<T>& g, int64_t i, T* p, T* conic, int32_t* box) {
  p[2 * i] = g.px;
  p[2 * i + 1] = g.py;
  conic[3 * i] = g.q11;
  conic[3 * i + 1] = g.q12;
  conic[3 * i + 2] = g.q22;
  box[4 * i] = g.x0;
  box[4 * i + 1] = g.x1;
  box[4 * i + 2] = g.y0;
  box[4 * i + 3] = g.y1;
}

// Everything the kernels skip before touching a pixel: opacity cull (NaN opacity included), then
// the projection. Shared by the forward, the backward and its reduction, so every pass skips the
// same Gaussians.
template <typename T>
GSDD_FN bool visible_gaussian(const T* xy, const T* chol, const T* opacity, int64_t gid, int height,
                              int width, bool antialias, Projected<T>& g, T& o) {
  o = opacity[gid];
  if (!(o >= opacity_cull<T>())) return false;
  return project_gaussian(xy[2 * gid], xy[2 * gid + 1], chol[3 * gid], chol[3 * gid + 1], chol[3 * gid + 2],
                          height, width, antialias, g);
}

// σ cut: σ > cut_sigma(o) implies o·e^{-σ} < 1/255 under any exp here (relative error < 1e-4), so
// the sample is dropped; used only to skip work (row spans on the host, a warp vote on the device).
template <typename T>
GSDD_FN T cut_sigma(T o) {
  return add_rn(log_(mul_rn(T(255), o)), T(1e-3));
}

// The fast exps are used only while every sample that can pass has σ < 80: there e^{-σ} is a
// normal float (no flush to zero on the device, no clamp at e^{-87} on the host). A Gaussian
// with o > ~2·10^32 (cut >= 80) is evaluated with the accurate exp throughout.
template <typename T>
GSDD_FN bool fast_exp_ok(T cut) {
  return cut < T(80);
}

// -------------------------------------------------------------------------------- samples ----
// Sub-sample offsets inside a pixel: {¼, ¾} per axis with antialiasing, else the centre.
template <bool AA> struct Samples {
  static constexpr int S = AA ? 2 : 1;
  GSDD_FN constexpr float off(int k) { return AA ? (k == 0 ? 0.25f : 0.75f) : 0.5f; }
};

// σ = ½(Q11Δx² + Q22Δy²) + Q12ΔxΔy in the reference's rounding; qxx = (Q11·Δx)·Δx and
// qyy = (Q22·Δy)·Δy are passed in (a row or column of samples shares them).
template <typename T>
GSDD_FN T sigma_of(T qxx, T qyy, T q12, T dx, T dy) {
  return add_rn(mul_rn(T(0.5), add_rn(qxx, qyy)), mul_rn(mul_rn(q12, dx), dy));
}
template <typename T>
GSDD_FN T square_term(T q, T d) {
  return mul_rn(mul_rn(q, d), d);
}

// One sample: e = e^{-σ}, ow = o·e, w = min(1, ow). keep: σ >= 0 and w >= 1/255. unclamped: the
// derivative of min(1, ·) is 1, i.e. ow < 1 (0 at the boundary ow == 1, the reference's
// _clamp_max convention). near: the fast exp was used and ow is close enough to 1/255 or 1 that
// the accurate exp must decide.
template <typename T, ExpMode M>
GSDD_FN void eval_sample(T sigma, T o, T& e, T& ow, T& w, bool& keep, bool& unclamped, bool& near) {
  e = exp_neg<M>(sigma);
  ow = mul_rn(o, e);
  // bitwise & and | (no short-circuit branches), so the host loops stay vectorizable
  const bool pos = sigma >= T(0);
  keep = pos & (ow >= alpha_min<T>());  // == (w >= 1/255), since 1/255 < 1 (NaN: false)
  const T da = ow - alpha_min<T>();
  const bool near_alpha = (da < T(0) ? -da : da) <= near_band<T>() * alpha_min<T>();
  if (M == ExpMode::kFastUnclamped) {  // o < 1 (host): ow < 1
    w = ow;
    unclamped = keep;
    near = pos & near_alpha;
  } else {
    w = ow > T(1) ? T(1) : ow;
    unclamped = keep & (ow < T(1));
    const T d1 = ow - T(1);
    near = M == ExpMode::kAccurate ? false : (pos & (near_alpha | ((d1 < T(0) ? -d1 : d1) <= near_band<T>())));
  }
}

// Calls f(iy, ix, e, ow, w, keep, unclamped) for each sample of one (pixel, Gaussian), in the order
// (row, column), with the eval_sample results; near is the OR of the samples' close-call flags.
// dx[k] = px − (col + off(k)), dy[k] = py − (row + off(k)).
template <typename T, bool AA, ExpMode M, typename F>
GSDD_FN void for_each_sample(const T (&dx)[Samples<AA>::S], const T (&dy)[Samples<AA>::S], T q11, T q12, T q22, T o,
                             bool& near, F&& f) {
  constexpr int S = Samples<AA>::S;
  T qxx[S], qyy[S];
  GSDD_UNROLL
  for (int k = 0; k < S; ++k) {
    qxx[k] = square_term(q11, dx[k]);
    qyy[k] = square_term(q22, dy[k]);
  }
  near = false;
  GSDD_UNROLL
  for (int iy = 0; iy < S; ++iy) {
    GSDD_UNROLL
    for (int ix = 0; ix < S; ++ix) {
      const T sigma = sigma_of(qxx[ix], qyy[iy], q12, dx[ix], dy[iy]);
      T e, ow, w;
      bool keep, unclamped, nr;
      eval_sample<T, M>(sigma, o, e, ow, w, keep, unclamped, nr);
      near |= nr;
      f(iy, ix, e, ow, w, keep, unclamped);
    }
  }
}

// Forward of one (pixel, Gaussian): Σ_s w over the pixel's samples that pass.
template <typename T, bool AA, ExpMode M>
GSDD_FN T pixel_weight(const T (&dx)[Samples<AA>::S], const T (&dy)[Samples<AA>::S], T q11, T q12, T q22,
                       T o, bool& near) {
  T wsum = T(0);
  for_each_sample<T, AA, M>(dx, dy, q11, q12, q22, o, near,
                            [&](int, int, T, T, T w, bool keep, bool) { wsum += keep ? w : T(0); });
  return wsum;
}

// Backward of one (pixel, Gaussian), before the upstream gradient: over the samples that pass,
// wsum = Σ w (→ ∂c), and over those that are also unclamped esum = Σ e, sp = Σ o·e·QΔ and
// s.. = Σ o·e·(Δx², ΔxΔy, Δy²). With a = c·g (g = G / samples per pixel), ∂σ = −o·e·a per sample.
template <typename T>
struct PixelGrad {
  T wsum, esum, spx, spy, sxx, sxy, syy;
};

template <typename T, bool AA, ExpMode M>
GSDD_FN PixelGrad<T> pixel_grad(const T (&dx)[Samples<AA>::S], const T (&dy)[Samples<AA>::S], T q11, T q12,
                                T q22, T o, bool& near) {
  constexpr int S = Samples<AA>::S;
  PixelGrad<T> r{T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  T u[S][S];  // o·e of the samples whose derivative flows (unclamped), else 0
  for_each_sample<T, AA, M>(dx, dy, q11, q12, q22, o, near,
                            [&](int iy, int ix, T e, T ow, T w, bool keep, bool unclamped) {
                              r.wsum += keep ? w : T(0);
                              r.esum += unclamped ? e : T(0);
                              u[iy][ix] = unclamped ? ow : T(0);  // the derivative of min(1, ·) flows
                            });
  // Σ_s u·Δ and Σ_s u·ΔΔᵀ, factored over the sample grid (Δx depends on the column, Δy on the row)
  T sx = T(0), sy = T(0), sxx = T(0), syy = T(0), sxy = T(0);
  GSDD_UNROLL
  for (int ix = 0; ix < S; ++ix) {
    T col = T(0);
    GSDD_UNROLL
    for (int iy = 0; iy < S; ++iy) col += u[iy][ix];
    sx += dx[ix] * col;
    sxx += (dx[ix] * dx[ix]) * col;
  }
  GSDD_UNROLL
  for (int iy = 0; iy < S; ++iy) {
    T row = T(0), rowx = T(0);
    GSDD_UNROLL
    for (int ix = 0; ix < S; ++ix) {
      row += u[iy][ix];
      rowx += dx[ix] * u[iy][ix];
    }
    sy += dy[iy] * row;
    syy += (dy[iy] * dy[iy]) * row;
    sxy += dy[iy] * rowx;
  }
  r.spx = q11 * sx + q12 * sy;  // Σ u·(QΔ)_x
  r.spy = q22 * sy + q12 * sx;  // Σ u·(QΔ)_y
  r.sxx = sxx;
  r.sxy = sxy;
  r.syy = syy;
  return r;
}

// Per-pixel gradient values of (p_x, p_y, Q11, Q12, Q22, o) given a = Σ_c c_c·g_c:
// ∂p = −a·Σ o·e·QΔ, ∂Q11 = −½a·Σ o·e·Δx², ∂Q12 = −a·Σ o·e·ΔxΔy (scalar entry), ∂Q22 = −½a·Σ o·e·Δy²,
// ∂o = a·Σ e. The colour gradient is wsum·g_c. (A struct of scalars, not an array: the host
// vectorizer keeps it in registers.)
template <typename T>
struct GradValues {
  T px, py, q11, q12, q22, o;
};

template <typename T>
GSDD_FN GradValues<T> pixel_grad_values(const PixelGrad<T>& r, T a) {
  return {-a * r.spx, -a * r.spy, T(-0.5) * a * r.sxx, -a * r.sxy, T(-0.5) * a * r.syy, a * r.esum};
}

// Chain rule of one Gaussian's summed (∂p_x, ∂p_y, ∂Q11, ∂Q12, ∂Q22) back to (x, y) and
// (L11, L21, L22): Q = inv·(Σ'22, −Σ'12, Σ'11) with inv = 1/det, det = Σ'11Σ'22 − Σ'12²; the 1/16
// floor passes the gradient where the unclamped value is > 1/16 (clamp_min); Σ'11 = L11² + s,
// Σ'12 = L11·L21, Σ'22 = L21² + L22² + s; p = (W/2, H/2)·(xy + 1). Equals −Q(∂ℒ/∂Q)Q for the
// symmetric matrix form.
template <typename T>
GSDD_FN void chain_rule(const T (&v)[5], T l11, T l21, T l22, bool antialias, int height, int width,
                        T (&v_xy)[2], T (&v_chol)[3]) {
  const T s = antialias ? filter_var<T>() : T(0);
  const T a_raw = add_rn(mul_rn(l11, l11), s);
  const T c_raw = add_rn(add_rn(mul_rn(l21, l21), mul_rn(l22, l22)), s);
  const T sa = clamp_min(a_raw, min_var<T>());
  const T sb = mul_rn(l11, l21);
  const T sc = clamp_min(c_raw, min_var<T>());
  const T inv = T(1) / (sa * sc - sb * sb);
  const T v_inv = v[2] * sc - v[3] * sb + v[4] * sa;
  const T v_det = -v_inv * inv * inv;
  const T v_sa = a_raw > min_var<T>() ? v[4] * inv + v_det * sc : T(0);
  const T v_sc = c_raw > min_var<T>() ? v[2] * inv + v_det * sa : T(0);
  const T v_sb = -v[3] * inv - T(2) * sb * v_det;
  v_chol[0] = T(2) * l11 * v_sa + l21 * v_sb;
  v_chol[1] = l11 * v_sb + T(2) * l21 * v_sc;
  v_chol[2] = T(2) * l22 * v_sc;
  v_xy[0] = T(0.5) * static_cast<T>(width) * v[0];
  v_xy[1] = T(0.5) * static_cast<T>(height) * v[1];
}

}  // namespace gsdd
