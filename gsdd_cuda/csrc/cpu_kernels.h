// Entry points of the CPU kernels (rasterize_cpu.cpp), called by the operator wrappers in ops.cpp
// after the input checks. Raw contiguous pointers; T is float or double.
#pragma once

#include <cstdint>

namespace gsdd::cpu {

// out [B, C, H, W] (written entirely).
template <typename T>
void rasterize_fwd(const T* xy, const T* chol, const T* rgb, const T* opacity, int64_t num_images, int64_t n,
                   int64_t channels, int height, int width, bool antialias, T* out);

// Gradients w.r.t. xy [B*N, 2], chol [B*N, 3], rgb [B*N, C], opacity [B*N] (written entirely).
template <typename T>
void rasterize_bwd(const T* v_out, const T* xy, const T* chol, const T* rgb, const T* opacity, int64_t num_images,
                   int64_t n, int64_t channels, int height, int width, bool antialias, T* v_xy, T* v_chol, T* v_rgb,
                   T* v_opacity);

// p [M, 2], conic [M, 3], box [M, 4] = (x0, x1, y0, y1); (0, 0, 0, 0) where nothing can render.
template <typename T>
void project(const T* xy, const T* chol, int64_t count, int height, int width, bool antialias, T* p, T* conic,
             int32_t* box);

}  // namespace gsdd::cpu
