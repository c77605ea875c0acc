// Backward rasterizer: gsdd::rasterize_bwd (SPEC.md §2.6).
//
// Same grid, block and Gaussian chunking as the forward (rasterize_fwd.cu). Per (pixel, Gaussian)
// each thread sums its sub-samples; the per-Gaussian gradient partials
//   (∂p_x, ∂p_y, ∂Q11, ∂Q12, ∂Q22, ∂o, ∂c[0..CB))      (Q12 = the scalar conic entry)
// are reduced over the warp with shuffles, over the block with shared-memory atomics, then one
// thread per Gaussian maps the block's partial through the (linear) chain rule Q → Σ' → L and
// p → xy and adds it to the global gradients with one atomicAdd per value and tile.
#include "common.cuh"
#include "rasterize.h"

#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace gsdd {

template <int CB, bool AA>
__global__ void __launch_bounds__(kBlock)
    rasterize_bwd_kernel(const float* __restrict__ v_out,    // [B, C, H, W]
                         const float* __restrict__ xy,       // [B*N, 2]
                         const float* __restrict__ chol,     // [B*N, 3]
                         const float* __restrict__ rgb,      // [B*N, C]
                         const float* __restrict__ opacity,  // [B*N]
                         int n, int channels, int height, int width, int tiles_x, int tiles_y,
                         float* __restrict__ v_xy,           // [B*N, 2]
                         float* __restrict__ v_chol,         // [B*N, 3]
                         float* __restrict__ v_rgb,          // [B*N, C]
                         float* __restrict__ v_opacity) {    // [B*N]
  constexpr int NV = 6 + CB;  // gradient values per Gaussian: p(2), Q(3), o, c[CB]
  __shared__ float2 s_p[kBlock];
  __shared__ float4 s_qo[kBlock];
  __shared__ float s_c[kBlock * CB];
  __shared__ int s_id[kBlock];
  __shared__ float s_grad[kBlock * NV];
  __shared__ int s_warp_count[kWarps];

  const PixelSite<AA> site(tiles_x, tiles_y, height, width);
  const int64_t b = site.b;
  const int c0 = blockIdx.y * CB;
  const int cn = min(CB, channels - c0);
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int lane = tid & 31;
  const bool inside = site.inside;
  const float filter_var = AA ? kFilterVar : 0.0f;
  constexpr int S = PixelSite<AA>::S;
  const float (&sx)[S] = site.sx;
  const float (&sy)[S] = site.sy;

  // Upstream gradient of this pixel per sub-sample: G / (number of sub-samples).
  float gs[CB];
  {
    const float scale = AA ? 0.25f : 1.0f;
#pragma unroll
    for (int k = 0; k < CB; ++k) {
      gs[k] = (inside && k < cn) ? v_out[site.offset(channels, c0 + k, height, width)] * scale : 0.0f;
    }
  }

  for (int i = tid; i < kBlock * NV; i += kBlock) s_grad[i] = 0.0f;
  // (the first barrier inside load_chunk orders this before any shared atomicAdd)

  auto store = [&](int pos, int64_t gid, const Projected& g, float o) {
    s_p[pos] = make_float2(g.px, g.py);
    s_qo[pos] = make_float4(g.q11, g.q12, g.q22, o);
    s_id[pos] = static_cast<int>(gid);
#pragma unroll
    for (int k = 0; k < CB; ++k) s_c[pos * CB + k] = (k < cn) ? rgb[gid * channels + c0 + k] : 0.0f;
  };

  for (int base = 0; base < n; base += kBlock) {
    const int count = load_chunk(xy, chol, opacity, b, n, base, site.tile_x, site.tile_y, height, width,
                                 filter_var, tiles_x, tiles_y, s_warp_count, store);
    // Every thread runs every iteration: the warp shuffles below need all 32 lanes.
    for (int j = 0; j < count; ++j) {
      const float2 p = s_p[j];
      const float4 q = s_qo[j];
      float wsum = 0.0f;  // Σ_s w            → ∂c
      float esum = 0.0f;  // Σ_s e (unclamped) → ∂o
      float spx = 0.0f, spy = 0.0f;              // Σ_s o·e·(QΔ)
      float sxx = 0.0f, sxy = 0.0f, syy = 0.0f;  // Σ_s o·e·(Δx², ΔxΔy, Δy²)
      bool touched = false;
      if (inside) {
        float dx[S], dy[S], qxx[S], qyy[S];
#pragma unroll
        for (int k = 0; k < S; ++k) {
          dx[k] = __fsub_rn(p.x, sx[k]);
          dy[k] = __fsub_rn(p.y, sy[k]);
          qxx[k] = __fmul_rn(__fmul_rn(q.x, dx[k]), dx[k]);
          qyy[k] = __fmul_rn(__fmul_rn(q.z, dy[k]), dy[k]);
        }
#pragma unroll
        for (int iy = 0; iy < S; ++iy) {
#pragma unroll
          for (int ix = 0; ix < S; ++ix) {
            const float sigma = sigma_of(qxx[ix], qyy[iy], q.y, dx[ix], dy[iy]);
            if (!(sigma >= 0.0f)) continue;
            const float e = expf(-sigma);
            const float ow = __fmul_rn(q.w, e);
            const float w = ow > 1.0f ? 1.0f : ow;
            if (!(w >= kAlphaMin)) continue;
            touched = true;
            wsum += w;
            if (ow <= 1.0f) {  // exact derivative of min(1, ·): zero where the clamp is active
              esum += e;
              const float ddx = dx[ix], ddy = dy[iy];
              spx += ow * (q.x * ddx + q.y * ddy);
              spy += ow * (q.z * ddy + q.y * ddx);
              sxx += ow * ddx * ddx;
              sxy += ow * ddx * ddy;
              syy += ow * ddy * ddy;
            }
          }
        }
      }
      if (!__any_sync(kFullMask, touched)) continue;  // warp-uniform
      // a = c·g_s; ∂σ = −o·e·a per sample, hence the sums above times −a.
      float a = 0.0f;
#pragma unroll
      for (int k = 0; k < CB; ++k) a += s_c[j * CB + k] * gs[k];
      float v[NV];
      v[0] = -a * spx;          // ∂p_x
      v[1] = -a * spy;          // ∂p_y
      v[2] = -0.5f * a * sxx;   // ∂Q11   (σ = ½Q11Δx² + ½Q22Δy² + Q12ΔxΔy)
      v[3] = -a * sxy;          // ∂Q12   (scalar entry: ∂σ/∂Q12 = ΔxΔy)
      v[4] = -0.5f * a * syy;   // ∂Q22
      v[5] = a * esum;          // ∂o
#pragma unroll
      for (int k = 0; k < CB; ++k) v[6 + k] = wsum * gs[k];  // ∂c
#pragma unroll
      for (int k = 0; k < NV; ++k) {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(kFullMask, v[k], off);
      }
      if (lane == 0) {
#pragma unroll
        for (int k = 0; k < NV; ++k) atomicAdd(&s_grad[j * NV + k], v[k]);
      }
    }
    __syncthreads();  // all shared partials of this chunk are complete

    // One thread per Gaussian of the chunk: chain rule on the block's partial, then global atomics.
    if (tid < count) {
      float v[NV];
      bool any = false;
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        v[k] = s_grad[tid * NV + k];
        s_grad[tid * NV + k] = 0.0f;  // ready for the next chunk (reused after its load barriers)
        any |= (v[k] != 0.0f);
      }
      if (any) {
        const int64_t gid = s_id[tid];
        const float l11 = chol[3 * gid], l21 = chol[3 * gid + 1], l22 = chol[3 * gid + 2];
        // Σ' with the reference's clamps (gradient passes where the unclamped value >= floor).
        const float a_raw = __fadd_rn(__fmul_rn(l11, l11), filter_var);
        const float c_raw = __fadd_rn(__fadd_rn(__fmul_rn(l21, l21), __fmul_rn(l22, l22)), filter_var);
        const float sa = fmaxf(a_raw, kMinVar);
        const float sb = l11 * l21;
        const float sc = fmaxf(c_raw, kMinVar);
        const float inv = 1.0f / (sa * sc - sb * sb);
        // Q = inv·(sc, −sb, sa); chain through inv = 1/det, det = sa·sc − sb².
        const float v_inv = v[2] * sc - v[3] * sb + v[4] * sa;
        const float v_det = -v_inv * inv * inv;
        float v_sa = v[4] * inv + v_det * sc;
        float v_sc = v[2] * inv + v_det * sa;
        const float v_sb = -v[3] * inv - 2.0f * sb * v_det;
        if (!(a_raw >= kMinVar)) v_sa = 0.0f;
        if (!(c_raw >= kMinVar)) v_sc = 0.0f;
        // Σ'11 = L11², Σ'12 = L11·L21, Σ'22 = L21² + L22² (+ s).
        atomicAdd(&v_chol[3 * gid + 0], 2.0f * l11 * v_sa + l21 * v_sb);
        atomicAdd(&v_chol[3 * gid + 1], l11 * v_sb + 2.0f * l21 * v_sc);
        atomicAdd(&v_chol[3 * gid + 2], 2.0f * l22 * v_sc);
        atomicAdd(&v_xy[2 * gid + 0], 0.5f * static_cast<float>(width) * v[0]);
        atomicAdd(&v_xy[2 * gid + 1], 0.5f * static_cast<float>(height) * v[1]);
        atomicAdd(&v_opacity[gid], v[5]);
#pragma unroll
        for (int k = 0; k < CB; ++k) {
          if (k < cn) atomicAdd(&v_rgb[gid * channels + c0 + k], v[6 + k]);
        }
      }
    }
    // The next chunk's load_chunk starts with writes to s_warp_count only; its first barrier
    // orders this chunk's reads of s_p/s_qo/s_c/s_id/s_grad before the next chunk's writes.
  }
}

namespace {

template <int CB, bool AA>
void launch_bwd(const at::Tensor& v_out, const at::Tensor& xy, const at::Tensor& chol,
                const at::Tensor& rgb, const at::Tensor& opacity, int64_t num_images, int n,
                int channels, int height, int width, at::Tensor& v_xy, at::Tensor& v_chol,
                at::Tensor& v_rgb, at::Tensor& v_opacity, cudaStream_t stream) {
  const int tiles_x = (width + kTile - 1) / kTile;
  const int tiles_y = (height + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(num_images * tiles_x * tiles_y), (channels + CB - 1) / CB);
  const dim3 block(kTile, kTile);
  rasterize_bwd_kernel<CB, AA><<<grid, block, 0, stream>>>(
      v_out.data_ptr<float>(), xy.data_ptr<float>(), chol.data_ptr<float>(), rgb.data_ptr<float>(),
      opacity.data_ptr<float>(), n, channels, height, width, tiles_x, tiles_y,
      v_xy.data_ptr<float>(), v_chol.data_ptr<float>(), v_rgb.data_ptr<float>(),
      v_opacity.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <bool AA, typename... Args>
void dispatch_bwd(int channels, Args&&... args) {
  switch (channels) {
    case 1: launch_bwd<1, AA>(args...); break;
    case 2: launch_bwd<2, AA>(args...); break;
    case 3: launch_bwd<3, AA>(args...); break;
    default: launch_bwd<4, AA>(args...); break;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd_cuda(
    const at::Tensor& v_out_in, const at::Tensor& xy_in, const at::Tensor& chol_in,
    const at::Tensor& rgb_in, const at::Tensor& opacity_in, int64_t num_images, int64_t height,
    int64_t width, bool antialias) {
  const int64_t n = check_inputs(xy_in, chol_in, rgb_in, opacity_in, num_images, height, width);
  const int64_t channels = rgb_in.size(1);
  TORCH_CHECK(v_out_in.dim() == 4 && v_out_in.size(0) == num_images && v_out_in.size(1) == channels &&
                  v_out_in.size(2) == height && v_out_in.size(3) == width,
              "gsdd: v_out must be [B, C, H, W] = [", num_images, ", ", channels, ", ", height, ", ",
              width, "], got ", v_out_in.sizes());
  TORCH_CHECK(v_out_in.scalar_type() == at::kFloat, "gsdd: v_out must be float32, got ", v_out_in.scalar_type());
  TORCH_CHECK(v_out_in.device() == xy_in.device(), "gsdd: v_out must be on the device of the inputs");
  const c10::cuda::CUDAGuard guard(xy_in.device());
  const at::Tensor v_out = v_out_in.contiguous();
  const at::Tensor xy = xy_in.contiguous();
  const at::Tensor chol = chol_in.contiguous();
  const at::Tensor rgb = rgb_in.contiguous();
  const at::Tensor opacity = opacity_in.contiguous();
  at::Tensor v_xy = at::zeros_like(xy);
  at::Tensor v_chol = at::zeros_like(chol);
  at::Tensor v_rgb = at::zeros_like(rgb);
  at::Tensor v_opacity = at::zeros_like(opacity);
  if (n == 0 || height == 0 || width == 0) return {v_xy, v_chol, v_rgb, v_opacity};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(xy.device().index()).stream();
  const int ni = static_cast<int>(n), ci = static_cast<int>(channels);
  const int hi = static_cast<int>(height), wi = static_cast<int>(width);
  if (antialias) {
    dispatch_bwd<true>(ci, v_out, xy, chol, rgb, opacity, num_images, ni, ci, hi, wi, v_xy, v_chol,
                       v_rgb, v_opacity, stream);
  } else {
    dispatch_bwd<false>(ci, v_out, xy, chol, rgb, opacity, num_images, ni, ci, hi, wi, v_xy, v_chol,
                        v_rgb, v_opacity, stream);
  }
  return {v_xy, v_chol, v_rgb, v_opacity};
}

TORCH_LIBRARY_IMPL(gsdd, CUDA, m) { m.impl("rasterize_bwd", &rasterize_bwd_cuda); }

}  // namespace gsdd
