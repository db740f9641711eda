#pragma once
// safetensors: the tensor file format of Hugging Face (and timm) checkpoints, read and written here.
//
// Layout: [8-byte little-endian header length N][N bytes of JSON header][data buffer]. The header is
//   {"__metadata__": {"key": "value", ...},                        (optional, strings only)
//    "name": {"dtype": "F32", "shape": [768, 3072], "data_offsets": [begin, end]}, ...}
// with offsets in bytes relative to the start of the data buffer; the tensors tile the buffer
// exactly (no gaps, no overlaps, nothing left over) and are stored row-major, little-endian.
//
//   auto f = loom::io::SafetensorsFile::open("mae.safetensors");   // validates the whole header
//   for (const std::string& name : f.names()) std::cout << name << " " << f.info(name).dtype << "\n";
//   loom::Tensor<float> w = f.load<float>("blocks.0.attn.qkv.weight");  // zero-copy when possible
//   loom::io::save_safetensors("out.safetensors", {{"w", w}, {"step", step}}, {{"epoch", "3"}});
//
// Reading maps the file (see mapped_file.hpp). load<T>() aliases the mapped bytes (no copy) when the
// stored dtype is T and the data is aligned for T; otherwise it converts into fresh memory:
// F16/BF16/F32/F64 to any of float, double, bf16; integer dtypes (and BOOL) to any loom integer type,
// refusing values that do not fit. Floating <-> integer conversions are refused. A zero-copy tensor
// keeps the mapping alive; writes to it stay private to the process.
//
// Writing (save_safetensors) is atomic (atomic_file.hpp) and deterministic: tensors are laid out by
// element size, largest first, then by name, so every tensor is aligned to its element size (the
// reference implementation sorts the same way); "__metadata__" comes first in the header, with
// keys sorted; the header is padded with spaces to a multiple of 8 bytes.
//
// Every malformed input — a truncated file, a header length beyond the file, bad JSON, unknown
// dtypes, shapes that disagree with the byte ranges, ranges out of bounds, overlapping, leaving gaps
// or not covering the buffer — is a loom::Error that names the file and the tensor at fault.
// The state-dict layer (load_into) is in state_dict.hpp, included at the end of this header.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loom/autograd/grad_mode.hpp"
#include "loom/core/dtype.hpp"
#include "loom/core/error.hpp"
#include "loom/core/shape.hpp"
#include "loom/core/storage.hpp"
#include "loom/core/tensor.hpp"
#include "loom/io/any_tensor.hpp"
#include "loom/io/atomic_file.hpp"
#include "loom/io/json.hpp"
#include "loom/io/mapped_file.hpp"

namespace loom::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; loom reads it in place on little-endian hosts only");

// The reference implementation refuses headers above 100 MB; so does loom (a corrupted length
// field must not make us parse gigabytes).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// ---- stored element types ---------------------------------------------------------------------------
enum class StoredKind : uint8_t { floating, integer, boolean, unsupported };

struct StoredDType {
  std::string_view name;  // as in the header: "F32", "BF16", ...
  size_t size;            // bytes per element
  StoredKind kind;
  DType natural;          // the loom type load_any() gives (F16 -> float32, BOOL -> uint8)
  bool exact;             // whether `natural` holds the stored bits unchanged (zero-copy possible)
};

namespace detail {
inline constexpr StoredDType kStoredDTypes[] = {
    {"F64", 8, StoredKind::floating, DType::f64, true},   {"F32", 4, StoredKind::floating, DType::f32, true},
    {"BF16", 2, StoredKind::floating, DType::bf16, true}, {"F16", 2, StoredKind::floating, DType::f32, false},
    {"I64", 8, StoredKind::integer, DType::i64, true},    {"I32", 4, StoredKind::integer, DType::i32, true},
    {"U8", 1, StoredKind::integer, DType::u8, true},      {"BOOL", 1, StoredKind::boolean, DType::u8, true},
    {"U64", 8, StoredKind::integer, DType::i64, false},   {"U32", 4, StoredKind::integer, DType::i64, false},
    {"I16", 2, StoredKind::integer, DType::i32, false},   {"U16", 2, StoredKind::integer, DType::i32, false},
    {"I8", 1, StoredKind::integer, DType::i32, false},
    // Known to the format, so files holding them validate and their other tensors load; loading
    // these themselves is refused.
    {"F8_E4M3", 1, StoredKind::unsupported, DType::f32, false},
    {"F8_E5M2", 1, StoredKind::unsupported, DType::f32, false},
};
}  // namespace detail

inline const StoredDType* find_stored_dtype(std::string_view name) {
  for (const StoredDType& d : detail::kStoredDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

// The header name of a loom element type.
inline std::string_view stored_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}

inline bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

// IEEE binary16 to float, exact (every half value is a float): normals, subnormals, inf, NaN.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = float(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// What the header says about one tensor.
struct TensorInfo {
  std::string name;
  std::string dtype;            // stored dtype name, e.g. "BF16"
  std::vector<int64_t> shape;   // may exceed loom's rank limit; load() then refuses
  uint64_t begin = 0, end = 0;  // byte range in the data buffer
  const StoredDType* stored = nullptr;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  std::string shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

namespace detail {

// Converts n stored elements at src (any alignment) into dst of type T, per the rules above.
template <Element T>
void convert_stored(const std::byte* src, const TensorInfo& info, T* dst, int64_t n, const std::string& file) {
  const std::string_view d = info.stored->name;
  const auto read = [src](int64_t i, auto zero) {
    decltype(zero) v;
    std::memcpy(&v, src + size_t(i) * sizeof(v), sizeof(v));
    return v;
  };
  if constexpr (FloatElement<T>) {
    LOOM_CHECK(info.stored->kind == StoredKind::floating, "safetensors: ", file, ": tensor '", info.name,
               "' is stored as ", d, ", which cannot be read as ", dtype_traits<T>::name,
               " (integer and floating-point data do not convert)");
    const auto emit = [&](auto read_one) {
      for (int64_t i = 0; i < n; ++i) dst[i] = convert_element<T>(read_one(i));
    };
    if (d == "F64") emit([&](int64_t i) { return read(i, double{}); });
    else if (d == "F32") emit([&](int64_t i) { return read(i, float{}); });
    else if (d == "BF16") emit([&](int64_t i) { return float(bf16::from_bits(read(i, uint16_t{}))); });
    else emit([&](int64_t i) { return half_to_float(read(i, uint16_t{})); });  // F16
  } else {
    LOOM_CHECK(info.stored->kind == StoredKind::integer || info.stored->kind == StoredKind::boolean,
               "safetensors: ", file, ": tensor '", info.name, "' is stored as ", d, ", which cannot be read as ",
               dtype_traits<T>::name, " (integer and floating-point data do not convert)");
    const auto emit = [&](auto read_one) {
      for (int64_t i = 0; i < n; ++i) {
        const auto v = read_one(i);
        using V = decltype(v);
        const bool fits = std::is_signed_v<V>
                              ? (int64_t(v) >= int64_t(std::numeric_limits<T>::min()) &&
                                 int64_t(v) <= int64_t(std::numeric_limits<T>::max()))
                              : uint64_t(v) <= uint64_t(std::numeric_limits<T>::max());
        LOOM_CHECK(fits, "safetensors: ", file, ": tensor '", info.name, "' element ", i, " = ", +v,
                   " does not fit ", dtype_traits<T>::name);
        dst[i] = static_cast<T>(v);
      }
    };
    if (d == "I64") emit([&](int64_t i) { return read(i, int64_t{}); });
    else if (d == "I32") emit([&](int64_t i) { return read(i, int32_t{}); });
    else if (d == "I16") emit([&](int64_t i) { return read(i, int16_t{}); });
    else if (d == "I8") emit([&](int64_t i) { return read(i, int8_t{}); });
    else if (d == "U64") emit([&](int64_t i) { return read(i, uint64_t{}); });
    else if (d == "U32") emit([&](int64_t i) { return read(i, uint32_t{}); });
    else if (d == "U16") emit([&](int64_t i) { return read(i, uint16_t{}); });
    else emit([&](int64_t i) { return read(i, uint8_t{}); });  // U8, BOOL
  }
}

inline uint64_t read_le64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace detail

// ---- reader -----------------------------------------------------------------------------------------
class SafetensorsFile {
 public:
  // Maps and validates the file; throws loom::Error naming the file (and tensor) on any defect.
  static SafetensorsFile open(const std::string& path) {
    SafetensorsFile f;
    f.map_ = std::make_shared<MappedFile>(path);
    f.parse_header();
    return f;
  }

  const std::string& path() const { return map_->path(); }
  size_t file_size() const { return map_->size(); }
  // Tensor names in header order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) missing(name);
    return infos_[it->second];
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Offset of the data buffer in the file (8 + header length).
  uint64_t data_offset() const { return data_offset_; }

  // The stored bytes of a tensor, as in the file.
  std::span<const std::byte> raw_bytes(const std::string& name) const {
    const TensorInfo& ti = info(name);
    return {map_->data() + data_offset_ + ti.begin, size_t(ti.end - ti.begin)};
  }

  // Whether load<T>(name) aliases the file instead of copying.
  template <Element T>
  bool zero_copy(const std::string& name) const {
    const TensorInfo& ti = info(name);
    return ti.stored->exact && ti.stored->natural == dtype_traits<T>::tag && ti.end > ti.begin &&
           reinterpret_cast<uintptr_t>(map_->data() + data_offset_ + ti.begin) % alignof(T) == 0;
  }

  // The tensor as Tensor<T> (see the header comment for zero-copy and conversion rules).
  template <Element T>
  Tensor<T> load(const std::string& name) const {
    const TensorInfo& ti = info(name);
    LOOM_CHECK(ti.stored->kind != StoredKind::unsupported, "safetensors: ", path(), ": tensor '", name,
               "' has dtype ", ti.dtype, ", which loom does not read");
    LOOM_CHECK(ti.shape.size() <= size_t(kMaxRank), "safetensors: ", path(), ": tensor '", name, "' has rank ",
               ti.shape.size(), " (shape ", ti.shape_str(), "), above loom's maximum of ", kMaxRank);
    const Shape shape(ti.shape);
    const std::byte* src = map_->data() + data_offset_ + ti.begin;
    if (zero_copy<T>(name)) {
      auto impl = std::make_shared<loom::detail::TensorImpl>();
      impl->storage = std::make_shared<Storage>(const_cast<std::byte*>(src), size_t(ti.end - ti.begin),
                                                DeviceKind::cpu, std::shared_ptr<void>(map_));
      impl->shape = shape;
      impl->strides = contiguous_strides(shape);
      impl->dtype = dtype_traits<T>::tag;
      impl->device = DeviceKind::cpu;
      return Tensor<T>(std::move(impl));
    }
    Tensor<T> out = Tensor<T>::empty(shape);
    if (ti.stored->exact && ti.stored->natural == dtype_traits<T>::tag)
      std::memcpy(out.data(), src, size_t(ti.end - ti.begin));  // same type, unaligned in the file
    else
      detail::convert_stored(src, ti, out.data(), shape.numel(), path());
    return out;
  }

  // The tensor in its natural loom type (F16 -> float32, BOOL -> uint8, narrow ints widened).
  AnyTensorRef load_any(const std::string& name) const {
    switch (info(name).stored->natural) {
      case DType::f32: return load<float>(name);
      case DType::f64: return load<double>(name);
      case DType::bf16: return load<bf16>(name);
      case DType::i64: return load<int64_t>(name);
      case DType::i32: return load<int32_t>(name);
      case DType::u8: return load<uint8_t>(name);
    }
    return {};
  }

 private:
  SafetensorsFile() = default;

  [[noreturn]] void missing(const std::string& name) const {
    std::string known;
    for (size_t i = 0; i < names_.size() && i < 10; ++i) known += (i ? ", '" : "'") + names_[i] + "'";
    if (names_.size() > 10) known += ", ... (" + std::to_string(names_.size()) + " in all)";
    loom::detail::fail("safetensors: ", path(), " has no tensor named '", name, "' (it holds ",
                       names_.empty() ? std::string("no tensors") : known, ")");
  }

  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    loom::detail::fail("safetensors: ", path(), ": ", parts...);
  }

  void parse_header() {
    const size_t size = map_->size();
    if (size < 8)
      bad("truncated: the file has ", size, " bytes, fewer than the 8-byte header length that starts the format");
    const uint64_t header_len = detail::read_le64(map_->data());
    if (header_len > size - 8)
      bad("header length ", header_len, " exceeds the ", size - 8, " bytes after the length field (truncated or not a "
          "safetensors file)");
    if (header_len > kMaxSafetensorsHeaderBytes)
      bad("header length ", header_len, " exceeds the format's limit of ", kMaxSafetensorsHeaderBytes, " bytes");
    data_offset_ = 8 + header_len;
    const uint64_t buffer_size = size - data_offset_;
    const std::string_view text(reinterpret_cast<const char*>(map_->data()) + 8, size_t(header_len));

    json::Value header;
    try {
      header = json::parse(text);
    } catch (const Error& e) {
      bad("header is not valid JSON: ", e.what());
    }
    if (!header.is_object()) bad("header must be a JSON object, found ", header.describe());

    for (const auto& [name, entry] : header.as_object()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) bad("\"__metadata__\" must be an object of strings, found ", entry.describe());
        for (const auto& [key, value] : entry.as_object()) {
          if (!value.is_string())
            bad("\"__metadata__\" value of key '", key, "' must be a string, found ", value.describe());
          metadata_[key] = value.as_string();
        }
        continue;
      }
      infos_.push_back(parse_entry(name, entry));
    }

    // The byte ranges must tile [0, buffer_size) exactly.
    std::vector<size_t> order(infos_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return std::pair(infos_[a].begin, infos_[a].end) < std::pair(infos_[b].begin, infos_[b].end);
    });
    uint64_t covered = 0;
    const TensorInfo* previous = nullptr;
    for (size_t i : order) {
      const TensorInfo& ti = infos_[i];
      if (ti.end > buffer_size)
        bad("tensor '", ti.name, "' data_offsets [", ti.begin, ", ", ti.end, "] reach beyond the ", buffer_size,
            "-byte data buffer (truncated file?)");
      if (ti.begin < covered)
        bad("tensor '", ti.name, "' data_offsets [", ti.begin, ", ", ti.end, "] overlap tensor '", previous->name,
            "' [", previous->begin, ", ", previous->end, "]");
      if (ti.begin > covered)
        bad("tensor '", ti.name, "' data_offsets [", ti.begin, ", ", ti.end, "] leave a gap after byte ", covered,
            previous ? " (the end of tensor '" + previous->name + "')" : std::string(" (the buffer start)"));
      covered = ti.end;
      previous = &ti;
    }
    if (covered != buffer_size)
      bad("the tensors cover ", covered, " bytes of the ", buffer_size, "-byte data buffer (", buffer_size - covered,
          " bytes unaccounted for)");

    for (size_t i = 0; i < infos_.size(); ++i) {
      names_.push_back(infos_[i].name);
      index_.emplace(infos_[i].name, i);
    }
  }

  TensorInfo parse_entry(const std::string& name, const json::Value& entry) const {
    TensorInfo ti;
    ti.name = name;
    if (!entry.is_object()) bad("tensor '", name, "' entry must be an object, found ", entry.describe());
    const json::Value* dtype = entry.find("dtype");
    const json::Value* shape = entry.find("shape");
    const json::Value* offsets = entry.find("data_offsets");
    if (!dtype || !shape || !offsets)
      bad("tensor '", name, "' entry lacks \"", !dtype ? "dtype" : !shape ? "shape" : "data_offsets", "\"");
    if (!dtype->is_string()) bad("tensor '", name, "' dtype must be a string, found ", dtype->describe());
    ti.dtype = dtype->as_string();
    ti.stored = find_stored_dtype(ti.dtype);
    if (!ti.stored) bad("tensor '", name, "' has unknown dtype \"", ti.dtype, "\"");

    if (!shape->is_array()) bad("tensor '", name, "' shape must be an array, found ", shape->describe());
    uint64_t numel = 1;
    bool overflow = false;
    for (const json::Value& d : shape->as_array()) {
      if (!d.is_int() || d.as_int() < 0)
        bad("tensor '", name, "' shape must hold non-negative integers, found ", d.describe());
      ti.shape.push_back(d.as_int());
      overflow = overflow || __builtin_mul_overflow(numel, uint64_t(d.as_int()), &numel);
    }
    uint64_t bytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, uint64_t(ti.stored->size), &bytes) ||
               numel > uint64_t(std::numeric_limits<int64_t>::max());
    if (overflow) bad("tensor '", name, "' shape ", ti.shape_str(), " has more elements than fit in 64 bits");

    if (!offsets->is_array() || offsets->size() != 2 || !offsets->at(0).is_int() || !offsets->at(1).is_int() ||
        offsets->at(0).as_int() < 0 || offsets->at(1).as_int() < 0)
      bad("tensor '", name, "' data_offsets must be [begin, end] with non-negative integers, found ", offsets->dump());
    ti.begin = uint64_t(offsets->at(0).as_int());
    ti.end = uint64_t(offsets->at(1).as_int());
    if (ti.end < ti.begin) bad("tensor '", name, "' data_offsets [", ti.begin, ", ", ti.end, "] end before they begin");
    if (ti.end - ti.begin != bytes)
      bad("tensor '", name, "' data_offsets [", ti.begin, ", ", ti.end, "] span ", ti.end - ti.begin,
          " bytes, but ", ti.dtype, " of shape ", ti.shape_str(), " needs ", bytes);
    return ti;
  }

  std::shared_ptr<MappedFile> map_;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> infos_;  // header order
  std::vector<std::string> names_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// ---- writer -----------------------------------------------------------------------------------------
using NamedTensorRefs = std::vector<std::pair<std::string, AnyTensorRef>>;

// Writes tensors (any layout: views are written in logical row-major order) and string metadata to
// `path` atomically. Throws loom::Error, leaving any existing file untouched, on undefined tensors,
// duplicate or reserved names, or I/O failure.
inline void save_safetensors(const std::string& path, const NamedTensorRefs& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  // Validate everything before touching the disk.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    LOOM_CHECK(name != "__metadata__", "save_safetensors: ", path, ": \"__metadata__\" is reserved and cannot name a tensor");
    LOOM_CHECK(t.defined(), "save_safetensors: ", path, ": tensor '", name, "' is undefined");
    order[i] = i;
  }
  // Largest elements first keeps every tensor aligned to its element size; names break ties.
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = dtype_size(tensors[a].second.dtype()), sb = dtype_size(tensors[b].second.dtype());
    return sa != sb ? sa > sb : tensors[a].first < tensors[b].first;
  });
  {
    std::vector<std::string_view> names;
    for (const auto& nt : tensors) names.push_back(nt.first);
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    LOOM_CHECK(dup == names.end(), "save_safetensors: ", path, ": tensor name '", dup == names.end() ? "" : *dup,
               "' appears twice");
  }

  // The header is assembled member by member (json::Object::set would search the names each time).
  std::string text = "{";
  if (!metadata.empty()) {
    json::Object meta;
    for (const auto& [key, value] : metadata) meta.set(key, value);
    text += "\"__metadata__\":" + json::Value(std::move(meta)).dump();
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    json::Array shape;
    for (int64_t d : t.shape()) shape.push_back(d);
    const uint64_t bytes = uint64_t(t.numel()) * dtype_size(t.dtype());
    const json::Value entry = json::Value::object({{"dtype", std::string(stored_name(t.dtype()))},
                                                   {"shape", std::move(shape)},
                                                   {"data_offsets", json::Value::array({offset, offset + bytes})}});
    text += (text.size() > 1 ? "," : "") + json::Value(name).dump() + ":" + entry.dump();
    offset += bytes;
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');  // the data buffer starts 8-byte aligned

  AtomicFileWriter out(path);
  const uint64_t header_len = text.size();
  out.write(&header_len, 8);
  out.write(text);
  for (size_t i : order) {
    tensors[i].second.visit([&](const auto& t) {
      if (t.numel() == 0) return;
      NoGradGuard no_grad;
      const auto dense = t.detach().contiguous();  // a copy only for non-contiguous views
      out.write(dense.data(), size_t(dense.numel()) * sizeof(*dense.data()));
    });
  }
  LOOM_CHECK(out.bytes_written() == 8 + header_len + offset, "save_safetensors: ", path, ": wrote ",
             out.bytes_written(), " bytes, expected ", 8 + header_len + offset);
  out.commit();
}

// Any range of (name, Tensor<T>) pairs, e.g. a module's state_dict().
template <class Range>
  requires(!std::same_as<std::decay_t<Range>, NamedTensorRefs>) && requires(const Range& r) {
    { std::string(std::get<0>(*std::begin(r))) };
    { AnyTensorRef(std::get<1>(*std::begin(r))) };
  }
void save_safetensors(const std::string& path, const Range& tensors, const std::map<std::string, std::string>& metadata = {}) {
  NamedTensorRefs refs;
  for (const auto& item : tensors) refs.emplace_back(std::string(std::get<0>(item)), AnyTensorRef(std::get<1>(item)));
  save_safetensors(path, refs, metadata);
}

}  // namespace loom::io

#include "loom/io/state_dict.hpp"
