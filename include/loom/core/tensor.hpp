#pragma once
// Tensor<T, Dev>: a typed, reference-counted handle to an n-d array (rank <= 6) with runtime shape,
// strides and offset over shared 64-byte-aligned storage. Copies of a handle share the array (as in
// PyTorch); views (reshape, permute, narrow, expand, ...) share storage; clone() copies.
//
// This header holds the class and its autograd-free members. Differentiable members (views,
// contiguous, clone, to<U>, backward, detach) are defined in loom/autograd and loom/ops, which are
// included at the bottom so that including this header gives the whole Tensor.
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "loom/core/device.hpp"
#include "loom/core/dtype.hpp"
#include "loom/core/error.hpp"
#include "loom/core/iterate.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/storage.hpp"
#include "loom/core/tensor_impl.hpp"

namespace loom {

template <Element T, class Dev = CPU>
class Tensor {
 public:
  using value_type = T;
  using device_type = Dev;
  static constexpr bool kOnDevice = Dev::kind == DeviceKind::cuda;  // data() is device memory

  Tensor() = default;  // undefined (no array); defined() is false
  explicit Tensor(detail::ImplPtr impl) : impl_(std::move(impl)) {
    LOOM_CHECK(!impl_ || (impl_->dtype == dtype_traits<T>::tag && impl_->device == Dev::kind),
               "Tensor<", dtype_traits<T>::name, ", ", Dev::name, ">: cannot view a ",
               dtype_name(impl_->dtype), " tensor on ", device_name(impl_->device));
  }

  // ---- factories ------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape) {
    for (int64_t d : shape) LOOM_CHECK(d >= 0, "Tensor::empty: negative extent in shape ", shape);
    auto impl = std::make_shared<detail::TensorImpl>();
    impl->storage = std::make_shared<Storage>(size_t(shape.numel()) * sizeof(T), Dev::kind);
    impl->shape = shape;
    impl->strides = contiguous_strides(shape);
    impl->dtype = dtype_traits<T>::tag;
    impl->device = Dev::kind;
    return Tensor(std::move(impl));
  }
  static Tensor full(const Shape& shape, T value) { return empty(shape).fill_(value); }
  static Tensor zeros(const Shape& shape) { return full(shape, T(0)); }
  static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
  static Tensor scalar(T value) { return full(Shape{}, value); }
  static Tensor from_vector(const Shape& shape, std::span<const T> values) {
    LOOM_CHECK(int64_t(values.size()) == shape.numel(), "Tensor::from_vector: ", values.size(),
               " values for shape ", shape, " (", shape.numel(), " elements)");
    Tensor t = empty(shape);
    detail::copy_bytes(t.data(), kOnDevice, values.data(), false, values.size() * sizeof(T));
    return t;
  }
  static Tensor from_vector(const Shape& shape, const std::vector<T>& values) {
    return from_vector(shape, std::span<const T>(values));
  }
  // 0, 1, ..., n-1 as a 1-d tensor.
  static Tensor arange(int64_t n) {
    LOOM_CHECK(n >= 0, "Tensor::arange: negative length ", n);
    std::vector<T> values(static_cast<size_t>(n));
    // Converted from the integer directly: going through float would round indices above 2^24.
    for (int64_t i = 0; i < n; ++i) values[size_t(i)] = convert<T>(i);
    return from_vector({n}, values);
  }

  // ---- layout ---------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return checked().shape; }
  const Strides& strides() const { return checked().strides; }
  int dim() const { return shape().size(); }
  int64_t size(int64_t d) const {
    LOOM_CHECK(dim() > 0, "size: a tensor of rank 0 has no dimension ", d);
    return shape()[wrap_dim(d, dim(), "size")];
  }
  int64_t stride(int64_t d) const {
    LOOM_CHECK(dim() > 0, "stride: a tensor of rank 0 has no dimension ", d);
    return strides()[wrap_dim(d, dim(), "stride")];
  }
  int64_t numel() const { return shape().numel(); }
  int64_t offset() const { return checked().offset; }
  bool is_contiguous() const {
    const auto& im = checked();
    int64_t expected = 1;
    for (int d = im.shape.size() - 1; d >= 0; --d) {
      if (im.shape[d] == 1) continue;
      if (im.strides[d] != expected) return false;
      expected *= im.shape[d];
    }
    return true;
  }
  // Pointer to the first element (the one at index 0 of every dim); a device pointer on CUDA.
  T* data() const {
    const auto& im = checked();
    return static_cast<T*>(im.storage->data()) + im.offset;
  }

  // ---- element access (for tests, tools and small data; on CUDA each call is a device copy) ----
  T at(std::initializer_list<int64_t> index) const { return read_element(element_offset(index)); }
  T& at_mut(std::initializer_list<int64_t> index) {
    static_assert(!kOnDevice, "at_mut: a CUDA tensor's elements are not addressable from the host; use copy_ or fill_");
    bump_version();
    return data()[element_offset(index)];
  }
  T item() const {
    LOOM_CHECK(numel() == 1, "item: tensor of shape ", shape(), " has ", numel(), " elements, expected 1");
    return read_element(0);
  }
  // All elements in row-major logical order (copied to the host).
  std::vector<T> to_vector() const {
    std::vector<T> out(static_cast<size_t>(numel()));
    if (out.empty()) return out;
    if constexpr (kOnDevice) {
      const Tensor dense = is_contiguous() ? *this : Tensor::empty(shape()).copy_(*this);
      detail::copy_bytes(out.data(), false, dense.data(), true, out.size() * sizeof(T));
      return out;
    }
    T* src = data();
    T* dst = out.data();
    const Strides dense = contiguous_strides(shape());
    detail::for_each_run<2>(shape(), {dense, strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) dst[off[0] + i * st[0]] = src[off[1] + i * st[1]];
    });
    return out;
  }

  // ---- in-place (bump the version counter; refused on leaves that require grad while recording)
  Tensor& fill_(T value) {
    check_inplace("fill_");
    if constexpr (kOnDevice) {
      static_assert(sizeof(T) <= sizeof(uint64_t));
      uint64_t bits = 0;
      std::memcpy(&bits, &value, sizeof(T));
      detail::device_fill(dtype_traits<T>::tag, data(), strides(), shape(), bits);
      bump_version();
      return *this;
    }
    T* p = data();
    detail::for_each_run<1>(shape(), {strides()}, [&](auto off, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) p[off[0] + i * st[0]] = value;
    });
    bump_version();
    return *this;
  }
  // Copies src (broadcast to this shape, any element type) into this tensor's elements.
  template <Element U>
  Tensor& copy_(const Tensor<U, Dev>& src) {
    check_inplace("copy_");
    const Shape target = broadcast_shapes(shape(), src.shape(), "copy_");
    LOOM_CHECK(target == shape(), "copy_: source of shape ", src.shape(),
               " does not broadcast to destination shape ", shape());
    if constexpr (kOnDevice) {
      detail::device_copy(dtype_traits<T>::tag, data(), strides(), dtype_traits<U>::tag, src.data(),
                          src.expand_strides_to(shape()), shape());
      bump_version();
      return *this;
    }
    T* dst = data();
    const U* s = src.data();
    detail::for_each_run<2>(shape(), {strides(), src.expand_strides_to(shape())},
                            [&](auto off, int64_t n, auto st) {
                              for (int64_t i = 0; i < n; ++i)
                                dst[off[0] + i * st[0]] = convert<T>(s[off[1] + i * st[1]]);
                            });
    bump_version();
    return *this;
  }

  // Strides that read this tensor as if broadcast to `target` (0 along broadcast dimensions).
  Strides expand_strides_to(const Shape& target) const {
    Strides out = Strides::filled(target.size(), 0);
    const int lead = target.size() - dim();
    LOOM_CHECK(lead >= 0, "expand: cannot broadcast shape ", shape(), " to ", target);
    for (int d = 0; d < dim(); ++d) {
      LOOM_CHECK(shape()[d] == target[lead + d] || shape()[d] == 1, "expand: cannot broadcast shape ",
                 shape(), " to ", target);
      out[lead + d] = shape()[d] == 1 ? 0 : strides()[d];
    }
    return out;
  }

  // ---- autograd (defined in loom/autograd/engine.hpp) -----------------------------------------
  bool requires_grad() const { return impl_ && (impl_->requires_grad || impl_->grad_fn); }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return !checked().grad_fn; }
  Tensor grad() const { return checked().grad ? Tensor(checked().grad) : Tensor(); }
  void zero_grad() const;  // sets an existing .grad to zeros in place (keeps its memory)
  void set_grad(const Tensor& g) const;
  std::string grad_fn_name() const;
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // shares storage and version counter, no graph

  // ---- views and copies (defined in loom/ops/view.hpp; all differentiable) --------------------
  Tensor view(const Shape& shape) const;      // requires compatible strides, else loom::Error
  Tensor reshape(const Shape& shape) const;   // view when possible, else a copy
  Tensor permute(std::initializer_list<int64_t> dims) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // itself when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  template <Element U>
  Tensor<U, Dev> to() const;  // element-type conversion (differentiable between float types)
  template <class D>
  Tensor<T, D> to_device() const;  // copy to another device (differentiable); itself when on D

  // ---- internals ------------------------------------------------------------------------------
  const detail::ImplPtr& impl() const { return impl_; }
  uint64_t version() const { return checked().storage->version(); }
  void bump_version() const { checked().storage->bump_version(); }
  int64_t use_count() const { return impl_.use_count(); }

  template <class To, class From>
  static To convert(From v) {
    if constexpr (std::is_same_v<To, From>) {
      return v;
    } else if constexpr (std::is_same_v<From, bf16>) {
      return static_cast<To>(static_cast<float>(v));
    } else if constexpr (std::is_same_v<To, bf16>) {
      return bf16(static_cast<float>(v));
    } else {
      return static_cast<To>(v);
    }
  }

 private:
  const detail::TensorImpl& checked() const {
    LOOM_CHECK(impl_ != nullptr, "use of an undefined Tensor (default-constructed or moved-from)");
    return *impl_;
  }
  T read_element(int64_t offset) const {
    if constexpr (kOnDevice) {
      T value;
      detail::copy_bytes(&value, false, data() + offset, true, sizeof(T));
      return value;
    } else {
      return data()[offset];
    }
  }
  int64_t element_offset(std::initializer_list<int64_t> index) const {
    LOOM_CHECK(int(index.size()) == dim(), "at: ", index.size(), " indices for a tensor of rank ", dim());
    int64_t off = 0;
    int d = 0;
    for (int64_t i : index) {
      LOOM_CHECK(i >= 0 && i < shape()[d], "at: index ", i, " out of range for dimension ", d,
                 " of shape ", shape());
      off += i * strides()[d++];
    }
    return off;
  }
  void check_inplace(const char* what) const;  // defined in loom/autograd/engine.hpp

  detail::ImplPtr impl_;
};

// Convenience aliases for the common element types.
template <class Dev = CPU> using FloatTensor = Tensor<float, Dev>;
template <class Dev = CPU> using DoubleTensor = Tensor<double, Dev>;
template <class Dev = CPU> using IndexTensor = Tensor<int64_t, Dev>;

// Converts one element between loom element types (bf16 goes through float).
template <class To, class From>
To convert_element(From v) {
  return Tensor<float>::template convert<To, From>(v);
}

}  // namespace loom

#include "loom/autograd/engine.hpp"
#include "loom/ops/view.hpp"
