// View ops (no copy: the result shares storage) and copies, each with its backward beside it.
// Backward of a view maps the gradient back to the input's shape: reshape back, permute by the
// inverse, scatter a slice into zeros, sum over broadcast dimensions.
// Part of the Tensor closure: core/tensor.hpp includes this file after defining the class.
// Including this header first still works: tensor.hpp is pulled in, which includes us back.
#include "loom/core/tensor.hpp"
#ifndef LOOM_OPS_VIEW_HPP
#define LOOM_OPS_VIEW_HPP
#include <numeric>
#include <optional>
#include <vector>

#include "loom/autograd/engine.hpp"
#include "loom/core/tensor.hpp"
#include "loom/cuda/reduce.hpp"

namespace loom {
namespace detail {

// A new impl over the same storage with the given layout (no autograd state).
template <class T, class Dev>
Tensor<T, Dev> alias(const Tensor<T, Dev>& t, const Shape& shape, const Strides& strides, int64_t offset) {
  auto im = std::make_shared<TensorImpl>();
  im->storage = t.impl()->storage;
  im->shape = shape;
  im->strides = strides;
  im->offset = offset;
  im->dtype = t.impl()->dtype;
  im->device = t.impl()->device;
  return Tensor<T, Dev>(std::move(im));
}

// Replaces a single -1 extent by what makes the element count match.
inline Shape infer_shape(const Shape& requested, int64_t numel, const char* what, const Shape& from) {
  Shape out = requested;
  int infer = -1;
  int64_t known = 1;
  for (int d = 0; d < out.size(); ++d) {
    if (out[d] == -1) {
      LOOM_CHECK(infer < 0, what, ": more than one -1 in shape ", requested);
      infer = d;
    } else {
      LOOM_CHECK(out[d] >= 0, what, ": negative extent in shape ", requested);
      known *= out[d];
    }
  }
  if (infer >= 0) {
    LOOM_CHECK(known > 0 && numel % known == 0, what, ": cannot infer -1 in ", requested, " for ", numel,
               " elements of shape ", from);
    out[infer] = numel / known;
  }
  LOOM_CHECK(out.numel() == numel, what, ": shape ", requested, " has ", out.numel(), " elements, input ", from,
             " has ", numel);
  return out;
}

// Strides that let `new_shape` view memory laid out as (old_shape, old_strides), if any exist.
// Old dims are grouped into chunks that are contiguous within themselves; every new dim must fall
// inside one chunk (PyTorch's rule), so merging or splitting never crosses a stride jump.
inline std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& new_shape) {
  if (old_shape.numel() == 0 || old_shape.empty()) return contiguous_strides(new_shape);
  Strides out = Strides::filled(new_shape.size(), 1);
  int view_d = new_shape.size() - 1;
  int64_t chunk_base = old_strides.back();  // stride of the innermost dim of the current chunk
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = old_shape.size() - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    const bool chunk_ends = d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
      out[view_d] = view_numel * chunk_base;
      view_numel *= new_shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (d > 0) {
      chunk_base = old_strides[d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// Sum of `src` over the dims where it was broadcast from `target` (NumPy rules), as a new tensor of
// shape `target`. Accumulates in double for float types (fp32 on CUDA); deterministic (fixed order).
template <class T, class Dev>
Tensor<T, Dev> sum_to(const Tensor<T, Dev>& src, const Shape& target) {
  if (src.shape() == target) return src;
  const Shape& s = src.shape();
  LOOM_CHECK(target.size() <= s.size(), "sum_to: cannot reduce shape ", s, " to ", target);
  Strides acc_strides = Strides::filled(s.size(), 0);  // into a dense accumulator of shape target
  const Strides dense = contiguous_strides(target);
  const int lead = s.size() - target.size();
  for (int d = 0; d < target.size(); ++d) {
    LOOM_CHECK(target[d] == s[lead + d] || target[d] == 1, "sum_to: cannot reduce shape ", s, " to ", target);
    acc_strides[lead + d] = target[d] == 1 ? 0 : dense[d];
  }
  if constexpr (Tensor<T, Dev>::kOnDevice) {  // fp32 accumulation on the device (loom/cuda/reduce.hpp)
    static_assert(cuda_backend_for<T>, "sum_to on CUDA tensors needs LOOM_WITH_CUDA (link loom::kernels)");
    std::array<bool, kMaxRank> reduced{};
    for (int d = 0; d < s.size(); ++d) reduced[d] = d < lead || (target[d - lead] == 1 && s[d] != 1);
    Tensor<T, Dev> out = Tensor<T, Dev>::empty(target);
    cuda::reduce_tensor(dtype_traits<T>::tag, cuda::ReduceOp::sum, out.data(), src.data(), s, src.strides(), reduced);
    return out;
  }
  using Acc = std::conditional_t<std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, bf16>, double, int64_t>;
  std::vector<Acc> acc(size_t(target.numel()), Acc(0));
  const T* ps = src.data();
  for_each_run_serial<2>(s, {acc_strides, src.strides()}, [&](auto off, int64_t n, auto st) {
    Acc* a = acc.data() + off[0];
    const T* p = ps + off[1];
    if (st[0] == 0) {
      Acc sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += Acc(compute_t<T>(p[i * st[1]]));
      *a += sum;
    } else {
      for (int64_t i = 0; i < n; ++i) a[i * st[0]] += Acc(compute_t<T>(p[i * st[1]]));
    }
  });
  Tensor<T, Dev> out = Tensor<T, Dev>::empty(target);
  T* po = out.data();
  for (size_t i = 0; i < acc.size(); ++i) po[i] = T(static_cast<compute_t<T>>(acc[i]));
  return out;
}

// Gradient of a strided view: zeros of the input's shape with `grad` written through the same view.
template <class T, class Dev, class MakeView>
Tensor<T, Dev> scatter_into_zeros(const Shape& input_shape, const Tensor<T, Dev>& grad, MakeView&& make_view) {
  Tensor<T, Dev> g = Tensor<T, Dev>::zeros(input_shape);
  make_view(g).copy_(grad);
  return g;
}

}  // namespace detail

// ---- views ------------------------------------------------------------------------------------

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::view(const Shape& requested) const {
  const Shape target = detail::infer_shape(requested, numel(), "view", shape());
  auto st = detail::view_strides(shape(), strides(), target);
  LOOM_CHECK(st.has_value(), "view: shape ", target, " is not compatible with the strides ", strides(), " of shape ",
             shape(), " (the input is not contiguous enough); use reshape() to copy");
  Tensor out = detail::alias(*this, target, *st, offset());
  if (autograd::should_record(impl_)) {
    autograd::record("ViewBackward", out, {impl_}, [in_shape = shape()](const Tensor& g) {
      return std::vector<Tensor>{g.reshape(in_shape)};
    });
  }
  return out;
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::reshape(const Shape& requested) const {
  const Shape target = detail::infer_shape(requested, numel(), "reshape", shape());
  if (detail::view_strides(shape(), strides(), target)) return view(target);
  return contiguous().view(target);
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::permute(const std::vector<int64_t>& dims) const {
  LOOM_CHECK(int(dims.size()) == dim(), "permute: ", dims.size(), " dims given for a tensor of rank ", dim(),
             " (shape ", shape(), ")");
  Shape sh;
  Strides st;
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int d = wrap_dim(dims[i], dim(), "permute");
    LOOM_CHECK(inverse[d] < 0, "permute: dimension ", d, " repeated");
    inverse[d] = int64_t(i);
    sh.push_back(shape()[d]);
    st.push_back(strides()[d]);
  }
  Tensor out = detail::alias(*this, sh, st, offset());
  if (autograd::should_record(impl_)) {
    autograd::record("PermuteBackward", out, {impl_}, [inverse](const Tensor& g) {
      return std::vector<Tensor>{g.permute(inverse)};
    });
  }
  return out;
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::permute(std::initializer_list<int64_t> dims) const {
  return permute(std::vector<int64_t>(dims));
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::transpose(int64_t d0, int64_t d1) const {
  const int a = wrap_dim(d0, dim(), "transpose"), b = wrap_dim(d1, dim(), "transpose");
  std::vector<int64_t> order(static_cast<size_t>(dim()));
  std::iota(order.begin(), order.end(), 0);
  if (dim() > 0) std::swap(order[a], order[b]);  // a rank-0 tensor transposes to itself
  return permute(order);
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  LOOM_CHECK(dim() > 0, "slice: cannot slice a tensor of rank 0");
  const int dd = wrap_dim(d, dim(), "slice");
  const int64_t n = shape()[dd];
  LOOM_CHECK(step >= 1, "slice: step must be >= 1, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape();
  Strides st = strides();
  sh[dd] = (end - start + step - 1) / step;
  st[dd] = strides()[dd] * step;
  Tensor out = detail::alias(*this, sh, st, offset() + start * strides()[dd]);
  if (autograd::should_record(impl_)) {
    autograd::record("SliceBackward", out, {impl_}, [in_shape = shape(), dd, start, end, step](const Tensor& g) {
      return std::vector<Tensor>{detail::scatter_into_zeros(in_shape, g, [&](const Tensor& z) {
        return z.slice(dd, start, end, step);
      })};
    });
  }
  return out;
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::narrow(int64_t d, int64_t start, int64_t length) const {
  LOOM_CHECK(dim() > 0, "narrow: cannot narrow a tensor of rank 0");
  const int dd = wrap_dim(d, dim(), "narrow");
  if (start < 0 && start >= -shape()[dd]) start += shape()[dd];  // counted from the end, as in PyTorch
  LOOM_CHECK(start >= 0 && length >= 0 && start + length <= shape()[dd], "narrow: range [", start, ", ",
             start + length, ") outside dimension ", dd, " of shape ", shape());
  return slice(dd, start, start + length);
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::select(int64_t d, int64_t index) const {
  LOOM_CHECK(dim() > 0, "select: cannot select from a tensor of rank 0");
  const int dd = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[dd];
  LOOM_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dimension ", dd, " of shape ",
             shape());
  if (index < 0) index += n;
  return narrow(dd, index, 1).squeeze(dd);
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::expand(const Shape& target_in) const {
  Shape target = target_in;
  const int lead = target.size() - dim();
  LOOM_CHECK(lead >= 0, "expand: cannot broadcast shape ", shape(), " to ", target_in);
  for (int d = 0; d < dim(); ++d)
    if (target[lead + d] == -1) target[lead + d] = shape()[d];
  for (int64_t e : target)
    LOOM_CHECK(e >= 0, "expand: cannot broadcast shape ", shape(), " to ", target_in,
               " (-1 is allowed only for existing dimensions)");
  Tensor out = detail::alias(*this, target, expand_strides_to(target), offset());
  if (autograd::should_record(impl_)) {
    autograd::record("ExpandBackward", out, {impl_}, [in_shape = shape()](const Tensor& g) {
      return std::vector<Tensor>{detail::sum_to(g, in_shape)};
    });
  }
  return out;
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::unsqueeze(int64_t d) const {
  const int dd = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape();
  sh.insert(dd, 1);
  return view(sh);
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::squeeze(int64_t d) const {
  const int dd = wrap_dim(d, dim(), "squeeze");
  if (dim() == 0 || shape()[dd] != 1) return *this;
  Shape sh = shape();
  Strides st = strides();
  sh.erase(dd);
  st.erase(dd);
  Tensor out = detail::alias(*this, sh, st, offset());
  if (autograd::should_record(impl_)) {
    autograd::record("SqueezeBackward", out, {impl_}, [in_shape = shape()](const Tensor& g) {
      return std::vector<Tensor>{g.reshape(in_shape)};
    });
  }
  return out;
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::squeeze() const {
  Shape sh;
  for (int64_t e : shape())
    if (e != 1) sh.push_back(e);
  return reshape(sh);
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  LOOM_CHECK(s <= e, "flatten: start_dim ", start_dim, " after end_dim ", end_dim);
  Shape sh;
  for (int d = 0; d < s; ++d) sh.push_back(shape()[d]);
  int64_t merged = 1;
  for (int d = s; d <= e; ++d) merged *= shape()[d];
  sh.push_back(merged);
  for (int d = e + 1; d < dim(); ++d) sh.push_back(shape()[d]);
  return reshape(sh);
}

// ---- copies -----------------------------------------------------------------------------------

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::clone() const {
  Tensor out = Tensor::empty(shape());
  {
    NoGradGuard guard;
    out.copy_(*this);
  }
  if (autograd::should_record(impl_)) {
    autograd::record("CloneBackward", out, {impl_}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  }
  return out;
}

template <Element T, class Dev>
Tensor<T, Dev> Tensor<T, Dev>::contiguous() const {
  return is_contiguous() ? *this : clone();
}

template <Element T, class Dev>
template <Element U>
Tensor<U, Dev> Tensor<T, Dev>::to() const {
  if constexpr (std::is_same_v<T, U>) {
    return *this;
  } else {
    Tensor<U, Dev> out = Tensor<U, Dev>::empty(shape());
    {
      NoGradGuard guard;
      out.copy_(*this);
    }
    if constexpr (FloatElement<T> && FloatElement<U>) {
      if (autograd::should_record(impl_)) {
        autograd::record("ToBackward", out, {impl_},
                         [](const Tensor<U, Dev>& g) { return std::vector<Tensor<T, Dev>>{g.template to<T>()}; });
      }
    }
    return out;
  }
}

template <Element T, class Dev>
template <class D>
Tensor<T, D> Tensor<T, Dev>::to_device() const {
  if constexpr (std::is_same_v<D, Dev>) {
    return *this;
  } else {
    Tensor<T, D> out = Tensor<T, D>::empty(shape());
    {
      NoGradGuard guard;
      const Tensor dense = contiguous();  // on the source device: the copy itself is one block
      detail::copy_bytes(out.data(), Tensor<T, D>::kOnDevice, dense.data(), kOnDevice, size_t(numel()) * sizeof(T));
    }
    if constexpr (FloatElement<T>) {
      if (autograd::should_record(impl_)) {
        autograd::record("ToDeviceBackward", out, {impl_}, [](const Tensor<T, D>& g) {
          return std::vector<Tensor<T, Dev>>{g.template to_device<Dev>()};
        });
      }
    }
    return out;
  }
}

}  // namespace loom

#endif  // LOOM_OPS_VIEW_HPP
