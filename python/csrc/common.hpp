// Shared by the PyTorch operator files (one per operator of the family): tensor views over a
// torch tensor's own memory (no copy), dtype mapping, and the error mapping. Written against the
// ATen API of PyTorch 2.1 so that any torch >= 2.1 builds it.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>
#include <torch/version.h>

#include <opennsa/opennsa.hpp>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace opennsa_torch {

// torch 2.4 made c10::optional an alias of std::optional; later releases drop the alias.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
template <class T>
using Optional = std::optional<T>;
#else
template <class T>
using Optional = c10::optional<T>;
#endif

using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

opennsa::DType to_dtype(const at::Tensor& t, const char* name);

// A view of the tensor's memory as it is: no copy, strides in elements, offset applied.
opennsa::TensorView view_of(const at::Tensor& t, const char* name);
// An empty view (absent optional tensor) when t is absent or undefined.
opennsa::TensorView optional_view(const Optional<at::Tensor>& t, const char* name);

// An int[]? argument as an optional vector.
std::optional<std::vector<std::int64_t>> to_vector(at::OptionalIntArrayRef a);

// The library reports bad input as opennsa::Error; Python sees ValueError for argument errors
// (message unchanged) and RuntimeError for internal failures.
void rethrow_library_error(const opennsa::Error& e);
template <class F>
void call_library(F&& f) {
    try {
        f();
    } catch (const opennsa::Error& e) {
        rethrow_library_error(e);
    }
}

void require_rank(const at::Tensor& t, int rank, const char* name, const char* layout);

}  // namespace opennsa_torch
