// Host-side declarations shared by the gsdd CUDA sources.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace gsdd {

// gsdd::rasterize_fwd, CUDA implementation (rasterize_fwd.cu).
at::Tensor rasterize_fwd_cuda(const at::Tensor& xy,       // [B*N, 2]
                              const at::Tensor& chol,     // [B*N, 3]
                              const at::Tensor& rgb,      // [B*N, C]
                              const at::Tensor& opacity,  // [B*N, 1]
                              int64_t num_images, int64_t height, int64_t width, bool antialias);

// gsdd::rasterize_bwd, CUDA implementation (rasterize_bwd.cu). Returns (v_xy, v_chol, v_rgb, v_opacity).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_bwd_cuda(
    const at::Tensor& v_out,  // [B, C, H, W]
    const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb, const at::Tensor& opacity,
    int64_t num_images, int64_t height, int64_t width, bool antialias);

// Shape / dtype / device checks shared by both ops (rasterize_fwd.cu). Returns N per image.
int64_t check_inputs(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                     const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width);

}  // namespace gsdd
