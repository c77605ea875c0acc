// Input checks shared by the CPU (ops.cpp) and CUDA (rasterize_*.cu) implementations of the gsdd
// operators. Header-only, so the CUDA library needs no symbol from the CPU library.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

#include "gsdd_math.h"

namespace gsdd {

// Checks the four parameter tensors of both ops and returns N (Gaussians per image).
// float32 on CUDA; float32 or float64 on CPU (one dtype for all four).
inline int64_t check_inputs(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                            const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width) {
  TORCH_CHECK(num_images >= 1, "gsdd: num_images must be >= 1, got ", num_images);
  TORCH_CHECK(height >= 0 && width >= 0, "gsdd: height and width must be >= 0, got ", height, "x", width);
  TORCH_CHECK(height <= (1 << 20) && width <= (1 << 20), "gsdd: image size too large: ", height, "x", width);
  TORCH_CHECK(xy.dim() == 2 && xy.size(1) == 2, "gsdd: xy must be [B*N, 2], got ", xy.sizes());
  const int64_t total = xy.size(0);
  TORCH_CHECK(chol.dim() == 2 && chol.size(0) == total && chol.size(1) == 3,
              "gsdd: chol must be [B*N, 3] = [", total, ", 3], got ", chol.sizes());
  TORCH_CHECK(rgb.dim() == 2 && rgb.size(0) == total && rgb.size(1) >= 1,
              "gsdd: rgb must be [B*N, C] with C >= 1 and B*N = ", total, ", got ", rgb.sizes());
  TORCH_CHECK(opacity.dim() == 2 && opacity.size(0) == total && opacity.size(1) == 1,
              "gsdd: opacity must be [B*N, 1] = [", total, ", 1], got ", opacity.sizes());
  TORCH_CHECK(total % num_images == 0, "gsdd: ", total, " Gaussians cannot be split into ", num_images,
              " images");
  TORCH_CHECK(total < std::numeric_limits<int32_t>::max(), "gsdd: B*N must be < 2^31, got ", total);
  const bool cuda = xy.is_cuda();
  for (const at::Tensor* t : {&xy, &chol, &rgb, &opacity}) {
    TORCH_CHECK(t->device() == xy.device(), "gsdd: all inputs must be on one device, got ", t->device(),
                " and ", xy.device());
    TORCH_CHECK(t->scalar_type() == xy.scalar_type(), "gsdd: all inputs must have one dtype, got ",
                t->scalar_type(), " and ", xy.scalar_type());
  }
  if (cuda) {
    TORCH_CHECK(xy.scalar_type() == at::kFloat,
                "gsdd: CUDA inputs must be float32 (the Python wrapper casts), got ", xy.scalar_type());
  } else {
    TORCH_CHECK(xy.is_cpu(), "gsdd: inputs must be CPU or CUDA tensors, got device ", xy.device());
    TORCH_CHECK(xy.scalar_type() == at::kFloat || xy.scalar_type() == at::kDouble,
                "gsdd: CPU inputs must be float32 or float64 (the Python wrapper casts), got ", xy.scalar_type());
  }
  const int64_t tiles = ((height + kTile - 1) / kTile) * ((width + kTile - 1) / kTile);
  TORCH_CHECK(num_images * tiles < std::numeric_limits<int32_t>::max(), "gsdd: B * tiles_per_image must be < 2^31");
  TORCH_CHECK(rgb.size(1) <= 65535 * 4, "gsdd: too many channels: ", rgb.size(1));
  return total / num_images;
}

// The upstream gradient of rasterize_bwd: [B, C, H, W], the inputs' dtype and device.
inline void check_grad_output(const at::Tensor& v_out, const at::Tensor& xy, int64_t num_images, int64_t channels,
                              int64_t height, int64_t width) {
  TORCH_CHECK(v_out.dim() == 4 && v_out.size(0) == num_images && v_out.size(1) == channels &&
                  v_out.size(2) == height && v_out.size(3) == width,
              "gsdd: v_out must be [B, C, H, W] = [", num_images, ", ", channels, ", ", height, ", ", width,
              "], got ", v_out.sizes());
  TORCH_CHECK(v_out.scalar_type() == xy.scalar_type(), "gsdd: v_out must have the inputs' dtype ",
              xy.scalar_type(), ", got ", v_out.scalar_type());
  TORCH_CHECK(v_out.device() == xy.device(), "gsdd: v_out must be on the device of the inputs");
}

}  // namespace gsdd
