// Argument checks shared by every operator's kernels (CPU, CUDA and Meta), so that all
// backends reject bad input with the same message: "mlpmix.<op>: <argument> ...
// expected ..., got ...". All raise RuntimeError in Python.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <vector>

namespace mlpmix::checks {

// `t` must be a floating tensor the op's kernels support on its device (common/dtypes.h).
// The message is the same from every kernel.
void floating(const char* op, const char* name, const at::Tensor& t);

// `t` must have exactly `ndim` dimensions (or at least `ndim` when `at_least`).
void rank(const char* op, const char* name, const at::Tensor& t, int64_t ndim,
          bool at_least = false);

// `t` must have the shape `expected`; `meaning` explains it, e.g. "(S*d, D)".
void shape(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef expected,
           const char* meaning);

// Like `shape`, for an expected shape that may hold symbolic sizes (a dynamic batch).
void sym_shape(const char* op, const char* name, const at::Tensor& t,
               c10::SymIntArrayRef expected, const char* meaning);

// `t` must share dtype and device with `ref` (named `ref_name`).
void same_dtype_device(const char* op, const char* name, const at::Tensor& t,
                       const char* ref_name, const at::Tensor& ref);

// same_dtype_device + shape for a vector argument of `length` elements.
void vector(const char* op, const char* name, const at::Tensor& t, int64_t length,
            const char* meaning, const char* ref_name, const at::Tensor& ref);

// Optional variant of `vector`, for bias-like arguments.
void optional_vector(const char* op, const char* name, const std::optional<at::Tensor>& t,
                     int64_t length, const char* meaning, const char* ref_name,
                     const at::Tensor& ref);

// same_dtype_device + sym_shape: a tensor beside `ref`, such as a backward's grad_out.
void tensor(const char* op, const char* name, const at::Tensor& t, c10::SymIntArrayRef expected,
            const char* meaning, const char* ref_name, const at::Tensor& ref);

// Optional variant of `tensor`, for the tensors a forward kept for its backward.
void optional_tensor(const char* op, const char* name, const std::optional<at::Tensor>& t,
                     c10::SymIntArrayRef expected, const char* meaning, const char* ref_name,
                     const at::Tensor& ref);

// Wraps a possibly negative axis index into [0, ndim) or raises naming `name`.
int64_t wrap_dim(const char* op, const char* name, int64_t dim, int64_t ndim);

}  // namespace mlpmix::checks
