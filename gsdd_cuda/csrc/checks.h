// Input checks shared by the CPU (ops.cpp) and CUDA (rasterize_*.cu) implementations of the gsdd
// operators. Header-only, so the CUDA library needs no symbol from the CPU library.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <tuple>

#include "gsdd_math.h"

namespace gsdd {

// Every check formats its message here (snprintf into a stack buffer) and hands torch one C string.
// TORCH_CHECK with several message parts builds a std::string with an ostringstream in this library
// and passes it to libc10; with torch 2.11 and g++ 13.3 (the lent GPU machines) that path crashed the
// process (SIGSEGV) instead of raising, while a single C-string message raises cleanly.
#define GSDD_CHECK(cond, ...)                                                    \
  do {                                                                           \
    if (C10_UNLIKELY(!(cond))) {                                                 \
      char gsdd_msg_[384];                                                       \
      std::snprintf(gsdd_msg_, sizeof(gsdd_msg_), __VA_ARGS__);                 \
      TORCH_CHECK(false, static_cast<const char*>(gsdd_msg_));                   \
    }                                                                            \
  } while (0)

// A tensor's shape as "[a, b, ...]", for messages.
struct ShapeText {
  char s[96];
  explicit ShapeText(const at::Tensor& t) {
    int pos = std::snprintf(s, sizeof(s), "[");
    for (int64_t d = 0; d < t.dim() && pos < static_cast<int>(sizeof(s)) - 24; ++d) {
      pos += std::snprintf(s + pos, sizeof(s) - pos, d ? ", %" PRId64 : "%" PRId64, t.size(d));
    }
    std::snprintf(s + pos, sizeof(s) - pos, "]");
  }
};
inline const char* device_text(const at::Tensor& t) { return t.is_cuda() ? "cuda" : t.is_cpu() ? "cpu" : "another device"; }
inline const char* dtype_text(const at::Tensor& t) { return c10::toString(t.scalar_type()); }

// Checks the four parameter tensors of both ops and returns N (Gaussians per image).
// float32 on CUDA; float32 or float64 on CPU (one dtype for all four).
inline int64_t check_inputs(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                            const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width) {
  GSDD_CHECK(num_images >= 1, "gsdd: num_images must be >= 1, got %" PRId64, num_images);
  GSDD_CHECK(height >= 0 && width >= 0, "gsdd: height and width must be >= 0, got %" PRId64 "x%" PRId64, height,
             width);
  GSDD_CHECK(height <= (1 << 20) && width <= (1 << 20), "gsdd: image size too large: %" PRId64 "x%" PRId64, height,
             width);
  GSDD_CHECK(xy.dim() == 2 && xy.size(1) == 2, "gsdd: xy must be [B*N, 2], got %s", ShapeText(xy).s);
  const int64_t total = xy.size(0);
  GSDD_CHECK(chol.dim() == 2 && chol.size(0) == total && chol.size(1) == 3,
             "gsdd: chol must be [B*N, 3] = [%" PRId64 ", 3], got %s", total, ShapeText(chol).s);
  GSDD_CHECK(rgb.dim() == 2 && rgb.size(0) == total && rgb.size(1) >= 1,
             "gsdd: rgb must be [B*N, C] with C >= 1 and B*N = %" PRId64 ", got %s", total, ShapeText(rgb).s);
  GSDD_CHECK(opacity.dim() == 2 && opacity.size(0) == total && opacity.size(1) == 1,
             "gsdd: opacity must be [B*N, 1] = [%" PRId64 ", 1], got %s", total, ShapeText(opacity).s);
  GSDD_CHECK(total % num_images == 0, "gsdd: %" PRId64 " Gaussians cannot be split into %" PRId64 " images", total,
             num_images);
  GSDD_CHECK(total < std::numeric_limits<int32_t>::max(), "gsdd: B*N must be < 2^31, got %" PRId64, total);
  const bool cuda = xy.is_cuda();
  for (const at::Tensor* t : {&xy, &chol, &rgb, &opacity}) {
    GSDD_CHECK(t->device() == xy.device(), "gsdd: all inputs must be on one device, got %s and %s",
               device_text(*t), device_text(xy));
    GSDD_CHECK(t->scalar_type() == xy.scalar_type(), "gsdd: all inputs must have one dtype, got %s and %s",
               dtype_text(*t), dtype_text(xy));
  }
  if (cuda) {
    GSDD_CHECK(xy.scalar_type() == at::kFloat, "gsdd: CUDA inputs must be float32 (the Python wrapper casts), got %s",
               dtype_text(xy));
  } else {
    GSDD_CHECK(xy.is_cpu(), "gsdd: inputs must be CPU or CUDA tensors, got %s", device_text(xy));
    GSDD_CHECK(xy.scalar_type() == at::kFloat || xy.scalar_type() == at::kDouble,
               "gsdd: CPU inputs must be float32 or float64 (the Python wrapper casts), got %s", dtype_text(xy));
  }
  const int64_t tiles = ((height + kTile - 1) / kTile) * ((width + kTile - 1) / kTile);
  GSDD_CHECK(num_images * tiles < std::numeric_limits<int32_t>::max(), "gsdd: B * tiles_per_image must be < 2^31");
  GSDD_CHECK(rgb.size(1) <= 65535 * 4, "gsdd: too many channels: %" PRId64, rgb.size(1));
  return total / num_images;
}

// The upstream gradient of rasterize_bwd: [B, C, H, W], the inputs' dtype and device.
inline void check_grad_output(const at::Tensor& v_out, const at::Tensor& xy, int64_t num_images, int64_t channels,
                              int64_t height, int64_t width) {
  GSDD_CHECK(v_out.dim() == 4 && v_out.size(0) == num_images && v_out.size(1) == channels &&
                 v_out.size(2) == height && v_out.size(3) == width,
             "gsdd: v_out must be [B, C, H, W] = [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "], got %s",
             num_images, channels, height, width, ShapeText(v_out).s);
  GSDD_CHECK(v_out.scalar_type() == xy.scalar_type(), "gsdd: v_out must have the inputs' dtype %s, got %s",
             dtype_text(xy), dtype_text(v_out));
  GSDD_CHECK(v_out.device() == xy.device(), "gsdd: v_out must be on the device of the inputs");
}

// The operators' tensors, checked and made contiguous (v_out only for the backward).
struct OpInputs {
  at::Tensor xy, chol, rgb, opacity, v_out;
  int64_t n = 0, channels = 0;
  bool empty = false;  // N, H or W is zero: nothing to render
};

inline OpInputs prepare_inputs(const at::Tensor& xy, const at::Tensor& chol, const at::Tensor& rgb,
                               const at::Tensor& opacity, int64_t num_images, int64_t height, int64_t width,
                               const at::Tensor* v_out = nullptr) {
  OpInputs in;
  in.n = check_inputs(xy, chol, rgb, opacity, num_images, height, width);
  in.channels = rgb.size(1);
  if (v_out != nullptr) {
    check_grad_output(*v_out, xy, num_images, in.channels, height, width);
    in.v_out = v_out->contiguous();
  }
  in.xy = xy.contiguous();
  in.chol = chol.contiguous();
  in.rgb = rgb.contiguous();
  in.opacity = opacity.contiguous();
  in.empty = in.n == 0 || height == 0 || width == 0;
  return in;
}

// The backward's outputs: zeros when there is nothing to render, else uninitialized (the kernels
// write every element).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grad_outputs(const OpInputs& in) {
  if (in.empty) {
    return {at::zeros_like(in.xy), at::zeros_like(in.chol), at::zeros_like(in.rgb), at::zeros_like(in.opacity)};
  }
  return {at::empty_like(in.xy), at::empty_like(in.chol), at::empty_like(in.rgb), at::empty_like(in.opacity)};
}

// gsdd::project's inputs.
inline void check_project_inputs(const at::Tensor& xy, const at::Tensor& chol, int64_t height, int64_t width) {
  GSDD_CHECK(height >= 0 && width >= 0 && height <= (1 << 20) && width <= (1 << 20),
             "gsdd: bad image size %" PRId64 "x%" PRId64, height, width);
  GSDD_CHECK(xy.dim() == 2 && xy.size(1) == 2, "gsdd: xy must be [M, 2], got %s", ShapeText(xy).s);
  GSDD_CHECK(chol.dim() == 2 && chol.size(1) == 3 && chol.size(0) == xy.size(0), "gsdd: chol must be [M, 3], got %s",
             ShapeText(chol).s);
  GSDD_CHECK(xy.device() == chol.device(), "gsdd: xy and chol must be on one device");
  const bool f32 = xy.scalar_type() == at::kFloat && chol.scalar_type() == at::kFloat;
  const bool f64 = xy.scalar_type() == at::kDouble && chol.scalar_type() == at::kDouble;
  GSDD_CHECK(f32 || (f64 && xy.is_cpu()), "gsdd: xy and chol must both be float32 (or, on CPU, float64)");
}

}  // namespace gsdd
