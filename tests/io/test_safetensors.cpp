#include "loom/core/dtype.hpp"  // first on purpose: checks that this core header is self-contained
// safetensors reader/writer and the load_into state-dict layer: bit-identical round trips of every
// dtype from any layout, the PyTorch-written goldens (aligned and unaligned), the committed
// loom-written golden (verified by numpy in tests/golden/make_safetensors_golden.py), zero-copy rules,
// atomic writes, every validation error, truncations and random header corruption.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loom/io/safetensors.hpp"
#include "support/check.hpp"

namespace fs = std::filesystem;
using loom::Shape;
using loom::Tensor;
using loom::bf16;
using loom::io::AnyTensorRef;
using loom::io::LoadOptions;
using loom::io::SafetensorsFile;
using loom::io::load_into;
using loom::io::save_safetensors;
using Catch::Contains;

namespace {

// A fresh directory, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("loom_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  size_t entries() const { return size_t(std::distance(fs::directory_iterator(path), fs::directory_iterator())); }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}
// A safetensors file from a header text and a data buffer, written without loom.
std::string raw_file(const std::string& header, const std::string& buffer) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + buffer;
}

std::string golden(const std::string& name) { return std::string(LOOM_SOURCE_DIR) + "/tests/golden/" + name; }

// The elements of t in logical order as raw bytes (NaN payloads and -0 included).
template <class T>
std::string bytes_of(const Tensor<T>& t) {
  const std::vector<T> v = t.to_vector();
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Random bits for every element: floats include NaNs with payloads, infinities, subnormals, -0.
template <class T>
Tensor<T> random_bits(const Shape& shape, std::mt19937_64& rng) {
  Tensor<T> t = Tensor<T>::empty(shape);
  auto* bytes = reinterpret_cast<unsigned char*>(t.data());
  for (size_t i = 0; i < size_t(t.numel()) * sizeof(T); ++i) bytes[i] = static_cast<unsigned char>(rng());
  return t;
}

// The formula shared with make_safetensors_golden.py: dyadic, so exact in F32, F64 and BF16.
double v(int64_t k) { return double((k * 37) % 101 - 50) / 16.0; }

// The tensors of the loom-written golden, built from views to exercise the writer's layout handling.
loom::io::NamedTensorRefs loom_golden_tensors() {
  std::vector<float> base_f32;
  for (int k = 0; k < 15; ++k) base_f32.push_back(float(v(k)));
  std::vector<double> f64;
  for (int k = 0; k < 24; ++k) f64.push_back(v(k) / 64 + k);
  std::vector<bf16> base_bf16;
  for (int k = 0; k < 14; ++k) base_bf16.push_back(bf16(float(v(k))));
  std::vector<uint8_t> mask;
  for (int k = 0; k < 9; ++k) mask.push_back(uint8_t((k * 29) % 256));
  const std::vector<int64_t> steps = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                                      1000000000000007LL, -3};
  const std::vector<int32_t> ids_row = {-7, std::numeric_limits<int32_t>::max()};
  return {
      {"weights.f32", Tensor<float>::from_vector({3, 5}, base_f32).transpose(0, 1)},  // [5, 3] view
      {"weights.f64", Tensor<double>::from_vector({2, 3, 4}, f64)},
      {"weights.bf16", Tensor<bf16>::from_vector({14}, base_bf16).slice(0, 0, 14, 2)},  // [7], stride 2
      {"steps.i64", Tensor<int64_t>::from_vector({4}, steps)},
      {"ids.i32", Tensor<int32_t>::from_vector({1, 2}, ids_row).expand({2, 2})},  // stride-0 rows
      {"mask.u8", Tensor<uint8_t>::from_vector({9}, mask)},
      {"scalar", Tensor<float>::scalar(2.5f)},
      {"empty", Tensor<double>::empty({0, 3})},
  };
}
const std::map<std::string, std::string> kLoomGoldenMetadata = {{"producer", "loom"}, {"format", "pt"}};

// Double value of the bits written by the golden script.
double from_hex_bits(const std::string& hex) {
  const uint64_t bits = std::stoull(hex, nullptr, 16);
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

template <class T>
void check_round_trip(const std::string& name, const Tensor<T>& source, const SafetensorsFile& file) {
  INFO("tensor " << name << " (" << loom::dtype_traits<T>::name << ")");
  const Tensor<T> back = file.load<T>(name);
  REQUIRE(back.shape() == source.shape());
  REQUIRE(bytes_of(back) == bytes_of(source));
  CHECK(file.info(name).dtype == std::string(loom::io::stored_name(loom::dtype_traits<T>::tag)));
  if (source.numel() > 0) CHECK(file.zero_copy<T>(name));  // loom's writer keeps every tensor aligned
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips bit for bit from any layout", "[io][safetensors]") {
  TempDir dir;
  std::mt19937_64 rng(42);
  loom::io::NamedTensorRefs tensors;
  std::vector<std::function<void(const SafetensorsFile&)>> checks;
  const auto add_family = [&]<class T>(const std::string& prefix, T) {
    for (int64_t n : {1, 7, 97, 225}) {
      const std::string tag = prefix + "." + std::to_string(n);
      const Tensor<T> contiguous = random_bits<T>({3, n}, rng);
      const Tensor<T> transposed = random_bits<T>({n, 3}, rng).transpose(0, 1);             // [3, n]
      const Tensor<T> stepped = random_bits<T>({3, 2 * n}, rng).slice(1, 1, 2 * n, 2);       // [3, n]
      const Tensor<T> expanded = random_bits<T>({1, n}, rng).expand({3, n});                 // [3, n]
      for (const auto& [name, t] : {std::pair{tag + ".contiguous", contiguous}, std::pair{tag + ".transposed", transposed},
                                    std::pair{tag + ".stepped", stepped}, std::pair{tag + ".expanded", expanded}}) {
        tensors.emplace_back(name, t);
        checks.push_back([name = name, t = t](const SafetensorsFile& f) { check_round_trip(name, t, f); });
      }
    }
    const Tensor<T> scalar = random_bits<T>({}, rng);
    const Tensor<T> empty = Tensor<T>::empty({4, 0, 2});
    const Tensor<T> rank6 = random_bits<T>({2, 1, 3, 1, 2, 3}, rng);
    for (const auto& [name, t] : {std::pair{prefix + ".scalar", scalar}, std::pair{prefix + ".empty", empty},
                                  std::pair{prefix + ".rank6", rank6}}) {
      tensors.emplace_back(name, t);
      checks.push_back([name = name, t = t](const SafetensorsFile& f) { check_round_trip(name, t, f); });
    }
  };
  add_family("f32", float{});
  add_family("f64", double{});
  add_family("bf16", bf16{});
  add_family("i64", int64_t{});
  add_family("i32", int32_t{});
  add_family("u8", uint8_t{});

  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors, {{"epoch", "3"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}});
  const SafetensorsFile file = SafetensorsFile::open(path);
  REQUIRE(file.names().size() == tensors.size());
  for (const auto& check : checks) check(file);
  CHECK(file.metadata() == std::map<std::string, std::string>{{"epoch", "3"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}});
  CHECK(dir.entries() == 1);  // no temporary file left behind

  // Writing the same tensors again gives the same bytes (deterministic order and header).
  save_safetensors(dir.file("again.safetensors"), tensors, {{"note", "caf\xc3\xa9 \"quoted\"\n"}, {"epoch", "3"}});
  CHECK(read_file(path) == read_file(dir.file("again.safetensors")));
}

TEST_CASE("safetensors: writer layout follows the reference implementation", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  save_safetensors(path, {{"b.u8", Tensor<uint8_t>::zeros({3})},
                          {"a.bf16", Tensor<bf16>::ones({5})},
                          {"z.f64", Tensor<double>::ones({2})},
                          {"c.f32", Tensor<float>::ones({1})},
                          {"a.i64", Tensor<int64_t>::ones({1})}});
  const std::string blob = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, blob.data(), 8);
  REQUIRE(n % 8 == 0);
  const std::string header = blob.substr(8, n);
  const size_t last = header.find_last_not_of(' ');
  CHECK(header[last] == '}');  // padding is spaces after the JSON
  const loom::json::Value h = loom::json::parse(header);
  CHECK_FALSE(h.contains("__metadata__"));  // no metadata given: no entry
  // Larger elements first, names break ties: every tensor aligned to its element size.
  CHECK(h.as_object().keys() == std::vector<std::string>{"a.i64", "z.f64", "c.f32", "a.bf16", "b.u8"});
  int64_t expected_begin = 0;
  for (const auto& [name, entry] : h.as_object()) {
    CHECK(entry["data_offsets"].at(0).as_int() == expected_begin);
    expected_begin = entry["data_offsets"].at(1).as_int();
  }
  CHECK(uint64_t(expected_begin) == blob.size() - 8 - n);
  CHECK(h["a.bf16"].dump() == R"({"dtype":"BF16","shape":[5],"data_offsets":[28,38]})");

  // No tensors at all is a valid file.
  save_safetensors(dir.file("none.safetensors"), loom::io::NamedTensorRefs{}, {{"k", "v"}});
  const SafetensorsFile none = SafetensorsFile::open(dir.file("none.safetensors"));
  CHECK(none.names().empty());
  CHECK(none.metadata().at("k") == "v");
}

TEST_CASE("safetensors: loom still writes the committed golden byte for byte", "[io][safetensors][golden]") {
  // tests/golden/make_safetensors_golden.py checks this file with numpy; LOOM_WRITE_GOLDEN=1 rewrites it.
  const std::string path = golden("safetensors_loom.safetensors");
  if (const char* env = std::getenv("LOOM_WRITE_GOLDEN"); env && std::string(env) == "1") {
    save_safetensors(path, loom_golden_tensors(), kLoomGoldenMetadata);
    WARN("rewrote " << path << ": now run /usr/bin/python3 tests/golden/make_safetensors_golden.py");
  }
  REQUIRE(fs::exists(path));
  TempDir dir;
  save_safetensors(dir.file("now.safetensors"), loom_golden_tensors(), kLoomGoldenMetadata);
  CHECK(read_file(dir.file("now.safetensors")) == read_file(path));
}

TEST_CASE("safetensors: PyTorch-written goldens read exactly, aligned and unaligned", "[io][safetensors][golden]") {
  const loom::json::Value expected = loom::json::parse(read_file(golden("safetensors_torch_expected.json")));
  const SafetensorsFile aligned = SafetensorsFile::open(golden("safetensors_torch.safetensors"));
  const SafetensorsFile unaligned = SafetensorsFile::open(golden("safetensors_torch_unaligned.safetensors"));
  REQUIRE(aligned.data_offset() % 8 == 0);
  REQUIRE(unaligned.data_offset() % 2 == 1);

  for (const SafetensorsFile* file : {&aligned, &unaligned}) {
    const bool is_aligned = file == &aligned;
    INFO(file->path());
    CHECK(file->names().size() == expected.size() - 1);
    std::map<std::string, std::string> meta;
    for (const auto& [k, val] : expected["__metadata__"].as_object()) meta[k] = val.as_string();
    CHECK(file->metadata() == meta);
    for (const auto& [name, want] : expected.as_object()) {
      if (name == "__metadata__") continue;
      INFO("tensor " << name);
      const loom::io::TensorInfo& info = file->info(name);
      CHECK(info.dtype == want["dtype"].as_string());
      std::vector<int64_t> shape;
      for (const auto& d : want["shape"].as_array()) shape.push_back(d.as_int());
      REQUIRE(info.shape == shape);
      if (want.contains("f64_bits")) {
        std::vector<double> values;
        for (const auto& b : want["f64_bits"].as_array()) values.push_back(from_hex_bits(b.as_string()));
        // Exact in every type that holds the stored values; torch's own bf16 rounding for bf16.
        loom::test::require_close(file->load<double>(name), values, {0, 0});
        if (info.dtype != "F64") loom::test::require_close(file->load<float>(name), values, {0, 0});
        const std::vector<bf16> as_bf16 = file->load<bf16>(name).to_vector();
        const auto& torch_bits = want["bf16_bits"].as_array();
        REQUIRE(as_bf16.size() == torch_bits.size());
        for (size_t i = 0; i < as_bf16.size(); ++i) {
          INFO("element " << i << " value " << values[i]);
          if (std::isnan(values[i]))
            CHECK(std::isnan(float(as_bf16[i])));
          else
            CHECK(as_bf16[i].bits == uint16_t(torch_bits[i].as_int()));
        }
      } else {
        std::vector<int64_t> ints;
        for (const auto& x : want["int"].as_array()) ints.push_back(x.as_int());
        CHECK(file->load<int64_t>(name).to_vector() == ints);
        const AnyTensorRef natural = file->load_any(name);
        CHECK(natural.numel() == int64_t(ints.size()));
      }
      // Zero-copy exactly when the data is aligned and the type is the stored one.
      const bool f32_aligned = (file->data_offset() + info.begin) % alignof(float) == 0;  // the map is page-aligned
      if (info.dtype == "F32") CHECK(file->zero_copy<float>(name) == (f32_aligned && info.numel() > 0));
      if (info.dtype == "F32" && is_aligned) CHECK(f32_aligned);
      if (info.dtype == "F16") CHECK_FALSE(file->zero_copy<float>(name));  // always converted
      if (info.dtype == "BOOL" || info.dtype == "U8") CHECK(file->zero_copy<uint8_t>(name));  // 1-byte: always aligned
    }
  }
  // The natural types: F16 widens to float32, BOOL reads as uint8.
  CHECK(aligned.load_any("head.f16").dtype() == loom::DType::f32);
  CHECK(aligned.load_any("mask").dtype() == loom::DType::u8);
  CHECK(aligned.load<uint8_t>("mask").to_vector() == std::vector<uint8_t>{1, 0, 1, 1, 0});
  // A zero-copy tensor really aliases the mapped file; a copied one does not.
  CHECK(static_cast<const void*>(aligned.load<float>("encoder.weight").data()) ==
        static_cast<const void*>(aligned.raw_bytes("encoder.weight").data()));
  CHECK(static_cast<const void*>(unaligned.load<float>("encoder.weight").data()) !=
        static_cast<const void*>(unaligned.raw_bytes("encoder.weight").data()));
}

TEST_CASE("safetensors: dtype conversion rules", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("conv.safetensors");
  save_safetensors(path, {{"f64", Tensor<double>::from_vector({3}, {0.1, -1e300, 1.0 / 3})},
                          {"i64", Tensor<int64_t>::from_vector({3}, {1, -1, int64_t(1) << 40})},
                          {"i32", Tensor<int32_t>::from_vector({2}, {-5, 300})},
                          {"u8", Tensor<uint8_t>::from_vector({2}, {0, 255})}});
  const SafetensorsFile f = SafetensorsFile::open(path);
  loom::test::require_close(f.load<float>("f64"), {double(0.1f), -double(INFINITY), double(1.0f / 3)}, {0, 0});
  CHECK(f.load<int64_t>("i32").to_vector() == std::vector<int64_t>{-5, 300});
  CHECK(f.load<int32_t>("u8").to_vector() == std::vector<int32_t>{0, 255});
  CHECK(f.load<int64_t>("u8").to_vector() == std::vector<int64_t>{0, 255});
  REQUIRE_THROWS_WITH(f.load<int32_t>("i64"), Contains("tensor 'i64' element 2 = 1099511627776 does not fit int32"));
  REQUIRE_THROWS_WITH(f.load<uint8_t>("i32"), Contains("tensor 'i32' element 0 = -5 does not fit uint8"));
  REQUIRE_THROWS_WITH(f.load<float>("i64"), Contains("tensor 'i64' is stored as I64, which cannot be read as float32"));
  REQUIRE_THROWS_WITH(f.load<int64_t>("f64"), Contains("tensor 'f64' is stored as F64, which cannot be read as int64"));
  REQUIRE_THROWS_AS(f.load<float>("nope"), loom::Error);
  REQUIRE_THROWS_WITH(f.info("nope"), Contains("has no tensor named 'nope'") && Contains("'f64'"));
}

TEST_CASE("safetensors: zero-copy tensors outlive the file object and stay private", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const std::vector<float> original = {1, 2, 3, 4, 5, 6};
  save_safetensors(path, {{"w", Tensor<float>::from_vector({2, 3}, original)}});
  Tensor<float> w;
  {
    const SafetensorsFile f = SafetensorsFile::open(path);
    REQUIRE(f.zero_copy<float>("w"));
    w = f.load<float>("w");
  }  // the file object is gone; the mapping lives on in w's storage
  CHECK(w.to_vector() == original);
  // Writing into it copies the page privately: the file keeps its content.
  w.at_mut({0, 0}) = 100;
  CHECK(w.at({0, 0}) == 100);
  CHECK(SafetensorsFile::open(path).load<float>("w").to_vector() == original);
  // Replacing the file while w maps the old one: w keeps the old bytes, a new open sees the new.
  save_safetensors(path, {{"w", Tensor<float>::full({2, 3}, 7)}});
  CHECK(w.at({1, 2}) == 6);
  CHECK(SafetensorsFile::open(path).load<float>("w").to_vector() == std::vector<float>(6, 7));
  // A zero-copy tensor can be a leaf that requires grad and be updated in place.
  Tensor<float> p = SafetensorsFile::open(path).load<float>("w");
  p.requires_grad_();
  {
    loom::NoGradGuard no_grad;
    p.fill_(2);
  }
  CHECK(p.to_vector() == std::vector<float>(6, 2));
}

TEST_CASE("safetensors: writes are atomic and validated before touching the disk", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"a", Tensor<float>::ones({4})}});
  const std::string before = read_file(path);
  const auto a = Tensor<float>::ones({2});

  REQUIRE_THROWS_WITH(save_safetensors(path, {{"a", a}, {"b", Tensor<int64_t>::ones({1})}, {"a", Tensor<uint8_t>::ones({1})}}),
                      Contains("tensor name 'a' appears twice"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"__metadata__", a}}), Contains("\"__metadata__\" is reserved"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"undef", Tensor<float>()}}), Contains("tensor 'undef' is undefined"));
  CHECK(read_file(path) == before);
  CHECK(dir.entries() == 1);

  REQUIRE_THROWS_WITH(save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", a}}),
                      Contains("cannot create a temporary file"));
  // A directory in the way: the rename fails, the temporary file is removed.
  fs::create_directories(dir.path / "taken.safetensors" / "child");
  REQUIRE_THROWS_WITH(save_safetensors(dir.file("taken.safetensors"), {{"a", a}}), Contains("rename"));
  CHECK(dir.entries() == 2);  // ckpt.safetensors and the directory: no temporary left

  // A state_dict-like vector of typed tensors works directly.
  std::vector<std::pair<std::string, Tensor<double>>> state = {{"x", Tensor<double>::ones({2})}};
  save_safetensors(dir.file("typed.safetensors"), state);
  CHECK(SafetensorsFile::open(dir.file("typed.safetensors")).load<double>("x").to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("safetensors: malformed headers are errors naming the tensor", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const auto open_raw = [&](const std::string& header, const std::string& buffer) {
    write_file(path, raw_file(header, buffer));
    return SafetensorsFile::open(path);
  };
  const std::string eight(8, '\0');
  const auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, int b, int e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(b) + "," + std::to_string(e) + "]}";
  };
  // Sanity: the helpers make a valid file.
  CHECK(open_raw("{" + entry("w", "F32", "[2]", 0, 8) + "}", eight).load<float>("w").numel() == 2);

  write_file(path, "abc");
  REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("truncated: the file has 3 bytes"));
  write_file(path, "");
  REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("the file has 0 bytes"));
  REQUIRE_THROWS_WITH(SafetensorsFile::open(dir.file("missing.safetensors")), Contains("cannot open"));
  REQUIRE_THROWS_WITH(SafetensorsFile::open(dir.path.string()), Contains("not a regular file"));
  {
    std::string blob = raw_file("{}", "");
    blob[0] = char(200);
    write_file(path, blob);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("header length 200 exceeds the 2 bytes"));
  }
  {  // a header length above the format's limit, in a sparse file big enough to hold it
    std::string blob = raw_file("{}", "");
    const uint64_t n = loom::io::kMaxSafetensorsHeaderBytes + 8;
    std::memcpy(blob.data(), &n, 8);
    write_file(path, blob);
    fs::resize_file(path, n + 8);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains("exceeds the format's limit"));
  }
  REQUIRE_THROWS_WITH(open_raw("{\"w\": {\"dtype\": \"F32\",}}", ""),
                      Contains("header is not valid JSON") && Contains("line 1, column 23: expected a string key"));
  REQUIRE_THROWS_WITH(open_raw("[1, 2]  ", ""), Contains("header must be a JSON object"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[2]", 0, 8) + "," + entry("w", "F32", "[2]", 8, 16) + "}",
                               eight + eight),
                      Contains("duplicate key \"w\""));
  REQUIRE_THROWS_WITH(open_raw("{\"w\": 3}", ""), Contains("tensor 'w' entry must be an object"));
  REQUIRE_THROWS_WITH(open_raw("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", ""),
                      Contains("tensor 'w' entry lacks \"data_offsets\""));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F99", "[2]", 0, 8) + "}", eight),
                      Contains("tensor 'w' has unknown dtype \"F99\""));
  REQUIRE_THROWS_WITH(open_raw("{\"w\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}", "1234"),
                      Contains("tensor 'w' dtype must be a string"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[-2]", 0, 8) + "}", eight),
                      Contains("tensor 'w' shape must hold non-negative integers, found the integer -2"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[2.5]", 0, 8) + "}", eight),
                      Contains("tensor 'w' shape must hold non-negative integers"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "{}", 0, 8) + "}", eight), Contains("tensor 'w' shape must be an array"));
  REQUIRE_THROWS_WITH(open_raw("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", eight),
                      Contains("tensor 'w' data_offsets must be [begin, end]"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[4294967296, 4294967296]", 0, 8) + "}", eight),
                      Contains("tensor 'w' shape [4294967296, 4294967296] has more elements than fit in 64 bits"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[3]", 0, 8) + "}", eight),
                      Contains("tensor 'w' data_offsets [0, 8] span 8 bytes, but F32 of shape [3] needs 12"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[0]", 8, 0) + "}", eight), Contains("end before they begin"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[2]", 0, 8) + "," + entry("v", "F32", "[2]", 8, 16) + "}", eight),
                      Contains("tensor 'v' data_offsets [8, 16] reach beyond the 8-byte data buffer"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[2]", 0, 8) + "," + entry("v", "F32", "[2]", 4, 12) + "}",
                               eight + "1234"),
                      Contains("tensor 'v' data_offsets [4, 12] overlap tensor 'w' [0, 8]"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[2]", 4, 12) + "}", "1234" + eight),
                      Contains("tensor 'w' data_offsets [4, 12] leave a gap after byte 0 (the buffer start)"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[1]", 0, 4) + "," + entry("v", "F32", "[1]", 8, 12) + "}",
                               "12345678abcd"),
                      Contains("tensor 'v' data_offsets [8, 12] leave a gap after byte 4 (the end of tensor 'w')"));
  REQUIRE_THROWS_WITH(open_raw("{" + entry("w", "F32", "[1]", 0, 4) + "}", eight),
                      Contains("the tensors cover 4 bytes of the 8-byte data buffer (4 bytes unaccounted for)"));
  REQUIRE_THROWS_WITH(open_raw("{\"__metadata__\": {\"a\": 1}}", ""),
                      Contains("\"__metadata__\" value of key 'a' must be a string, found the integer 1"));
  REQUIRE_THROWS_WITH(open_raw("{\"__metadata__\": [1]}", ""), Contains("\"__metadata__\" must be an object"));

  // Known-but-unsupported dtypes and ranks above loom's limit: the file opens, that tensor refuses.
  const SafetensorsFile f8 = open_raw("{" + entry("f8", "F8_E4M3", "[2]", 0, 2) + "," +
                                          entry("deep", "U8", "[1,1,1,1,1,1,2]", 2, 4) + "," +
                                          entry("ok", "F32", "[1]", 4, 8) + "}",
                                      eight);
  REQUIRE_THROWS_WITH(f8.load<float>("f8"), Contains("tensor 'f8' has dtype F8_E4M3, which loom does not read"));
  REQUIRE_THROWS_WITH(f8.load<uint8_t>("deep"), Contains("tensor 'deep' has rank 7 (shape [1, 1, 1, 1, 1, 1, 2])"));
  CHECK(f8.load<float>("ok").numel() == 1);
  // Narrow integer dtypes of the format load with widening.
  const SafetensorsFile narrow = open_raw("{" + entry("i8", "I8", "[2]", 0, 2) + "," + entry("u16", "U16", "[1]", 2, 4) +
                                              "," + entry("u64", "U64", "[1]", 4, 12) + "}",
                                          std::string("\xff\x05\xff\xff", 4) + std::string("\x09\0\0\0\0\0\0\x80", 8));
  CHECK(narrow.load<int32_t>("i8").to_vector() == std::vector<int32_t>{-1, 5});
  CHECK(narrow.load<int64_t>("u16").to_vector() == std::vector<int64_t>{65535});
  REQUIRE_THROWS_WITH(narrow.load<int64_t>("u64"), Contains("tensor 'u64' element 0 = 9223372036854775817 does not fit int64"));
}

TEST_CASE("safetensors: every truncation of a file is a clean error", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("small.safetensors");
  save_safetensors(path, {{"w", Tensor<float>::from_vector({2, 2}, {1, 2, 3, 4})},
                          {"ids", Tensor<int64_t>::from_vector({3}, {7, 8, 9})},
                          {"m", Tensor<uint8_t>::from_vector({3}, {1, 0, 1})}},
                   {{"k", "v"}});
  const std::string full = read_file(path);
  REQUIRE(SafetensorsFile::open(path).names().size() == 3);
  const std::string cut = dir.file("cut.safetensors");
  for (size_t len = 0; len < full.size(); ++len) {
    INFO("truncated to " << len << " of " << full.size() << " bytes");
    write_file(cut, std::string_view(full).substr(0, len));
    REQUIRE_THROWS_AS(SafetensorsFile::open(cut), loom::Error);
  }
}

TEST_CASE("safetensors: random header corruption never crashes", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("orig.safetensors");
  save_safetensors(path, {{"w", Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6})},
                          {"b", Tensor<bf16>::ones({3})},
                          {"ids", Tensor<int64_t>::from_vector({2}, {5, -5})},
                          {"m", Tensor<uint8_t>::ones({5})}},
                   {{"epoch", "1"}});
  const std::string full = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, full.data(), 8);
  const std::string bad = dir.file("flipped.safetensors");
  std::mt19937 rng(2024);
  int opened = 0, refused = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string blob = full;
    const int flips = 1 + int(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % (8 + n);  // length field and header text
      blob[at] = rng() % 2 ? char(rng()) : char(blob[at] ^ (1 << (rng() % 8)));
    }
    write_file(bad, blob);
    try {
      const SafetensorsFile f = SafetensorsFile::open(bad);
      ++opened;
      // Whatever opened must be readable in its natural types and loadable leniently.
      for (const std::string& name : f.names()) {
        try {
          const AnyTensorRef t = f.load_any(name);
          (void)t.visit([](const auto& x) { return x.to_vector().size(); });
        } catch (const loom::Error&) {  // e.g. a dtype flipped to one loom refuses to load
        }
      }
      std::vector<std::pair<std::string, Tensor<float>>> targets = {{"w", Tensor<float>::zeros({2, 3})}};
      try {
        load_into(targets, f, LoadOptions().strict(false));
      } catch (const loom::Error&) {
      }
    } catch (const loom::Error&) {
      ++refused;
    }
  }
  CHECK(opened + refused == 400);
  CHECK(refused > 0);
}

// ---- load_into --------------------------------------------------------------------------------------
namespace {
struct Checkpoint {
  TempDir dir;
  std::string path = dir.file("ckpt.safetensors");
  Checkpoint() {
    save_safetensors(path, {{"encoder.weight", Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6})},
                            {"encoder.scale", Tensor<double>::from_vector({2}, {0.5, -2})},
                            {"step", Tensor<int64_t>::from_vector({1}, {1234})},
                            {"decoder.weight", Tensor<bf16>::from_vector({3}, {bf16(1.5f), bf16(-2), bf16(0.25f)})}});
  }
};
}  // namespace

TEST_CASE("load_into: strict loading fills targets in place", "[io][safetensors][state_dict]") {
  Checkpoint ck;
  const SafetensorsFile file = SafetensorsFile::open(ck.path);
  Tensor<float> weight = Tensor<float>::zeros({2, 3});
  weight.requires_grad_();  // a parameter: filled under NoGradGuard, stays a leaf
  const uint64_t version = weight.version();
  Tensor<double> scale_base = Tensor<double>::zeros({2, 2});
  Tensor<double> scale = scale_base.select(1, 1);  // a strided view: [2] with stride 2
  Tensor<int64_t> step = Tensor<int64_t>::zeros({1});
  Tensor<bf16> decoder = Tensor<bf16>::zeros({3});
  const loom::io::NamedTensorRefs targets = {
      {"encoder.weight", weight}, {"encoder.scale", scale}, {"step", step}, {"decoder.weight", decoder}};
  const auto report = load_into(targets, file);
  CHECK(report.loaded == std::vector<std::string>{"encoder.weight", "encoder.scale", "step", "decoder.weight"});
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  CHECK(weight.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(weight.requires_grad());
  CHECK(weight.is_leaf());
  CHECK(weight.version() > version);
  CHECK(scale_base.to_vector() == std::vector<double>{0, 0.5, 0, -2});
  CHECK(step.item() == 1234);
  loom::test::require_close(decoder, {1.5, -2, 0.25}, {0, 0});
  // The path overload and a map of references.
  std::map<std::string, AnyTensorRef> as_map = {
      {"encoder.weight", weight}, {"encoder.scale", scale}, {"step", step}, {"decoder.weight", decoder}};
  CHECK(load_into(as_map, ck.path).loaded.size() == 4);
}

TEST_CASE("load_into: missing and unexpected tensors", "[io][safetensors][state_dict]") {
  Checkpoint ck;
  const SafetensorsFile file = SafetensorsFile::open(ck.path);
  Tensor<float> weight = Tensor<float>::zeros({2, 3});
  Tensor<float> extra = Tensor<float>::zeros({4});
  std::vector<std::pair<std::string, Tensor<float>>> targets = {{"encoder.weight", weight}, {"head.bias", extra}};
  REQUIRE_THROWS_AS(load_into(targets, file), loom::Error);
  REQUIRE_THROWS_WITH(load_into(targets, file),
                      Contains("missing 'head.bias'") &&
                          Contains("unexpected 'encoder.scale', 'step', 'decoder.weight'") && Contains("strict(false)"));
  CHECK(weight.to_vector() == std::vector<float>(6, 0));  // nothing written

  const auto report = load_into(targets, file, false);
  CHECK(report.loaded == std::vector<std::string>{"encoder.weight"});
  CHECK(report.missing == std::vector<std::string>{"head.bias"});
  CHECK(report.unexpected == std::vector<std::string>{"encoder.scale", "step", "decoder.weight"});
  CHECK(weight.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(extra.to_vector() == std::vector<float>(4, 0));

  // A name map strips a prefix and drops the decoder; dropped tensors are not "unexpected".
  Tensor<float> w2 = Tensor<float>::zeros({2, 3});
  std::vector<std::pair<std::string, Tensor<float>>> bare = {{"weight", w2}};
  const auto mapped = load_into(bare, file, LoadOptions().strict(false).map_names([](const std::string& n) {
    if (n.rfind("decoder.", 0) == 0) return std::string();
    return n.rfind("encoder.", 0) == 0 ? n.substr(8) : n;
  }));
  CHECK(mapped.loaded == std::vector<std::string>{"weight"});
  CHECK(mapped.dropped == std::vector<std::string>{"decoder.weight"});
  CHECK(mapped.unexpected == std::vector<std::string>{"encoder.scale", "step"});
  CHECK(w2.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  REQUIRE_THROWS_WITH(load_into(bare, file, LoadOptions().strict(false).map_names([](const std::string&) { return "weight"; })),
                      Contains("both map to target 'weight'"));
  REQUIRE_THROWS_WITH(load_into(loom::io::NamedTensorRefs{{"a", w2}, {"a", weight}}, file, false),
                      Contains("target name 'a' appears twice"));
  REQUIRE_THROWS_WITH(load_into(loom::io::NamedTensorRefs{{"a", Tensor<float>()}}, file, false),
                      Contains("target 'a' is an undefined tensor"));
}

TEST_CASE("load_into: shape and dtype mismatches name the tensor and write nothing", "[io][safetensors][state_dict]") {
  Checkpoint ck;
  const SafetensorsFile file = SafetensorsFile::open(ck.path);
  Tensor<float> weight = Tensor<float>::zeros({2, 3});
  Tensor<float> scale_f32 = Tensor<float>::zeros({2});  // stored as F64
  Tensor<int64_t> step = Tensor<int64_t>::zeros({1});
  Tensor<bf16> decoder = Tensor<bf16>::zeros({3});
  {
    Tensor<float> wrong = Tensor<float>::zeros({3, 2});
    const loom::io::NamedTensorRefs targets = {{"step", step}, {"encoder.weight", wrong}};
    REQUIRE_THROWS_WITH(load_into(targets, file, false),
                        Contains("tensor 'encoder.weight' has shape [2, 3] in the file but the target has shape [3, 2]") &&
                            Contains("LoadOptions().reshape(name)"));
    CHECK(step.item() == 0);  // validated first, written never
  }
  REQUIRE_THROWS_WITH(load_into(loom::io::NamedTensorRefs{{"encoder.weight", Tensor<float>::zeros({7})}}, file, false),
                      Contains("has shape [2, 3] in the file but the target has shape [7]"));
  const loom::io::NamedTensorRefs mixed = {{"encoder.weight", weight}, {"encoder.scale", scale_f32}};
  REQUIRE_THROWS_WITH(load_into(mixed, file, false),
                      Contains("tensor 'encoder.scale' is stored as F64 but the target is float32") &&
                          Contains("convert_dtypes(true)"));
  CHECK(weight.to_vector() == std::vector<float>(6, 0));
  load_into(mixed, file, LoadOptions().strict(false).convert_dtypes(true));
  CHECK(scale_f32.to_vector() == std::vector<float>{0.5f, -2.0f});
  CHECK(weight.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  // Integer data never becomes floating point, even with conversion on.
  Tensor<float> step_f = Tensor<float>::zeros({1});
  REQUIRE_THROWS_WITH(load_into(loom::io::NamedTensorRefs{{"step", step_f}}, file, LoadOptions().strict(false).convert_dtypes(true)),
                      Contains("tensor 'step' is stored as I64, which cannot be read as float32"));
  // bf16 stored, float target: a conversion.
  Tensor<float> decoder_f = Tensor<float>::zeros({3});
  REQUIRE_THROWS_WITH(load_into(loom::io::NamedTensorRefs{{"decoder.weight", decoder_f}}, file, false),
                      Contains("stored as BF16 but the target is float32"));
}

TEST_CASE("load_into: conv patch-embed weights load into a Linear by reshape or transform", "[io][safetensors][state_dict]") {
  const SafetensorsFile file = SafetensorsFile::open(golden("safetensors_torch.safetensors"));
  const loom::json::Value expected = loom::json::parse(read_file(golden("safetensors_torch_expected.json")));
  std::vector<double> conv;  // [D=4, C=2, p=3, p=3] row-major
  for (const auto& b : expected["patch_embed.proj.weight"]["f64_bits"].as_array()) conv.push_back(from_hex_bits(b.as_string()));
  REQUIRE(conv.size() == 72);

  Tensor<float> linear = Tensor<float>::zeros({4, 18});  // [D, C*p*p]
  std::vector<std::pair<std::string, Tensor<float>>> targets = {{"patch_embed.proj.weight", linear}};
  REQUIRE_THROWS_WITH(load_into(targets, file, false), Contains("has shape [4, 2, 3, 3] in the file but the target has shape [4, 18]"));
  load_into(targets, file, LoadOptions().strict(false).reshape("patch_embed.proj.weight"));
  loom::test::require_close(linear, conv, {0, 0});  // row-major flattening of (C, p, p)
  // Reshape only when the element count matches.
  Tensor<float> too_small = Tensor<float>::zeros({4, 17});
  std::vector<std::pair<std::string, Tensor<float>>> small = {{"patch_embed.proj.weight", too_small}};
  REQUIRE_THROWS_WITH(load_into(small, file, LoadOptions().strict(false).reshape("patch_embed.proj.weight")),
                      Contains("target has shape [4, 17]"));

  // A transform for a channels-last patch order [D, p, p, C], checked against an index loop.
  Tensor<float> channels_last = Tensor<float>::zeros({4, 18});
  std::vector<std::pair<std::string, Tensor<float>>> cl = {{"patch_embed.proj.weight", channels_last}};
  load_into(cl, file, LoadOptions().strict(false).transform("patch_embed.proj.weight", [](const AnyTensorRef& stored) {
    return AnyTensorRef(stored.get<float>().permute({0, 2, 3, 1}).reshape({4, 18}));
  }));
  std::vector<double> want;
  for (int d = 0; d < 4; ++d)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        for (int c = 0; c < 2; ++c) want.push_back(conv[size_t(((d * 2 + c) * 3 + i) * 3 + j)]);
  loom::test::require_close(channels_last, want, {0, 0});
  REQUIRE_THROWS_WITH(load_into(cl, file, LoadOptions().strict(false).transform("patch_embed.proj.weight",
                                                                                  [](const AnyTensorRef& s) { return s; })),
                      Contains("the transform of tensor 'patch_embed.proj.weight' returned float32 of shape [4, 2, 3, 3]"));
}
