// The code blocks of docs/tensor.md, compiled and run here with checks of what the guide says
// they do. The first test case verifies that every ```cpp block of the guide appears in this file
// verbatim (up to indentation), so the guide cannot drift from code that compiles.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/random.hpp"
#include "support/check.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(const std::string& line) {
  const size_t b = line.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  const size_t e = line.find_last_not_of(" \t\r");
  return line.substr(b, e - b + 1);
}

// Non-blank lines, stripped of indentation.
std::vector<std::string> code_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!trim(line).empty()) out.push_back(trim(line));
  return out;
}

}  // namespace

TEST_CASE("every code block of docs/tensor.md is compiled by this file", "[docs]") {
  const std::string guide = read_file(std::string(LOOM_SOURCE_DIR) + "/docs/tensor.md");
  const std::string self = read_file(std::string(LOOM_SOURCE_DIR) + "/tests/core/test_tensor_guide.cpp");
  REQUIRE_FALSE(guide.empty());
  REQUIRE_FALSE(self.empty());
  const std::vector<std::string> mine = code_lines(self);
  int blocks = 0;
  for (size_t at = guide.find("```cpp\n"); at != std::string::npos; at = guide.find("```cpp\n", at)) {
    const size_t start = at + 7, end = guide.find("```", start);
    REQUIRE(end != std::string::npos);
    const std::vector<std::string> block = code_lines(guide.substr(start, end - start));
    ++blocks;
    bool found = false;
    for (size_t i = 0; i + block.size() <= mine.size() && !found; ++i)
      found = std::equal(block.begin(), block.end(), mine.begin() + long(i));
    INFO("guide block " << blocks << " starting with: " << (block.empty() ? "" : block.front()));
    CHECK(found);
    at = end + 3;
  }
  CHECK(blocks == 7);
}

TEST_CASE("guide: element types and devices", "[docs]") {
  loom::Tensor<float> x = loom::Tensor<float>::zeros({2, 3});    // [2, 3] float on the CPU
  loom::Tensor<loom::bf16> h = loom::Tensor<loom::bf16>::full({4}, loom::bf16(1.0f));
  auto idx = loom::Tensor<int64_t>::arange(5);                     // 0 1 2 3 4
  auto w = loom::Tensor<double>::from_vector({2, 2}, {1.0, 2.0, 3.0, 4.0});
  auto s = loom::Tensor<float>::scalar(3.5f);                      // rank 0, one element
  float first = w.at({1, 0}) + s.item();                           // 3 + 3.5

  CHECK(x.shape() == loom::Shape{2, 3});
  CHECK(float(h.at({3})) == 1.0f);
  CHECK(idx.to_vector() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(s.dim() == 0);
  CHECK(first == 6.5f);
}

TEST_CASE("guide: views", "[docs]") {
  auto a = loom::Tensor<float>::arange(12).view({3, 4});        // [3, 4]
  auto at = a.transpose(0, 1);                                   // [4, 3], strides {1, 4}
  auto rows = a.slice(0, 0, 3, 2);                               // rows 0 and 2: [2, 4]
  auto last = a.select(1, -1);                                   // column 3: [3]
  auto wide = a.unsqueeze(0).expand({5, 3, 4});                  // [5, 3, 4], no copy
  auto flat = at.reshape({-1});                                  // a copy: at is not contiguous
  bool shared = rows.data() == a.data();                         // true: same storage, same origin

  CHECK(at.shape() == loom::Shape{4, 3});
  CHECK(at.strides() == loom::Strides{1, 4});
  CHECK(rows.to_vector() == std::vector<float>{0, 1, 2, 3, 8, 9, 10, 11});
  CHECK(last.to_vector() == std::vector<float>{3, 7, 11});
  CHECK(wide.strides() == loom::Strides{0, 4, 1});
  CHECK(flat.to_vector() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(flat.impl()->storage != a.impl()->storage);
  CHECK(shared);
  REQUIRE_THROWS_WITH(at.view({12}), Catch::Contains("reshape"));
}

TEST_CASE("guide: writes through views", "[docs]") {
  auto base = loom::Tensor<double>::zeros({4, 6});
  auto block = base.narrow(0, 1, 2).slice(1, 0, 6, 3);          // rows 1-2, columns 0 and 3: [2, 2]
  block.fill_(1.0);                                              // base now has four ones
  auto col = base.select(1, 3);                                  // [4]: 0 1 1 0
  base.at_mut({0, 3}) = 7.0;                                     // visible through col too

  double total = 0;
  for (double v : base.to_vector()) total += v;
  CHECK(total == 4.0 + 7.0);
  CHECK(base.at({2, 0}) == 1.0);
  CHECK(col.to_vector() == std::vector<double>{7, 1, 1, 0});
}

TEST_CASE("guide: copies and conversions", "[docs]") {
  auto m = loom::Tensor<float>::arange(6).view({2, 3});
  auto mt = m.transpose(0, 1).contiguous();                     // a copy, strides {2, 1}
  auto same = m.contiguous();                                    // m itself: no copy
  auto half = m.to<loom::bf16>();                                // rounded to nearest even
  auto ints = loom::Tensor<double>::from_vector({2}, {2.7, -2.7}).to<int64_t>();  // 2, -2
  auto dst = loom::Tensor<double>::zeros({2, 3});
  dst.copy_(loom::Tensor<float>::from_vector({3}, {1.f, 2.f, 3.f}));  // broadcast over rows
  std::vector<float> values = mt.to_vector();                   // 0 3 1 4 2 5

  CHECK(mt.strides() == loom::Strides{2, 1});
  CHECK(same.impl()->storage == m.impl()->storage);
  CHECK(float(half.at({1, 2})) == 5.0f);
  CHECK(ints.to_vector() == std::vector<int64_t>{2, -2});
  CHECK(dst.to_vector() == std::vector<double>{1, 2, 3, 1, 2, 3});
  CHECK(values == std::vector<float>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("guide: memory accounting", "[docs]") {
  loom::reset_peak_memory();
  const int64_t before = loom::memory_stats().current_bytes;
  {
    auto activations = loom::Tensor<float>::empty({256, 1024});  // 1 MiB
    auto view = activations.transpose(0, 1);                     // no new bytes
  }
  const loom::MemoryStats stats = loom::memory_stats();
  // stats.current_bytes == before; stats.peak_bytes >= before + 1 MiB; the block is now cached

  CHECK(stats.current_bytes == before);
  CHECK(stats.peak_bytes >= before + (int64_t(1) << 20));
  const char* no_cache = std::getenv("LOOM_NO_ALLOC_CACHE");
  if (!(no_cache && no_cache[0] != '0')) CHECK(stats.cached_bytes >= (int64_t(1) << 20));
}

TEST_CASE("guide: threading", "[docs]") {
  const int threads = loom::num_threads();
  std::vector<double> out(1000);
  loom::parallel_for(0, 1000, /*grain=*/64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[size_t(i)] = std::sqrt(double(i));
  });
  loom::set_num_threads(1);  // e.g. to time a single core
  loom::set_num_threads(2);

  CHECK(loom::num_threads() == 2);
  for (int i = 0; i < 1000; i += 37) CHECK(out[size_t(i)] == std::sqrt(double(i)));
  loom::set_num_threads(threads);
}

TEST_CASE("guide: random numbers", "[docs]") {
  loom::Generator gen(/*seed=*/2024);
  auto u = loom::rand<float>({2, 3}, gen);                       // counters 0-1; gen.offset() == 2
  auto z = loom::randn<double>({5}, gen);                        // counters 2-4 (two lanes per double)
  auto keep = loom::bernoulli({8}, 0.25, gen);                   // uint8 mask
  auto perm = loom::randperm(10, gen);
  auto noise = loom::rand<float>({4, 49}, gen);                  // [B, L]
  auto ids_shuffle = loom::argsort(noise, 1);                    // [B, L] per-row permutation
  auto ids_restore = loom::argsort(ids_shuffle, 1);              // [B, L] its inverse
  loom::Generator replay(2024, /*offset=*/2);                    // redraw z exactly
  auto z_again = loom::randn<double>({5}, replay);

  CHECK(u.shape() == loom::Shape{2, 3});
  CHECK(z_again.to_vector() == z.to_vector());
  CHECK(keep.shape() == loom::Shape{8});
  CHECK(perm.numel() == 10);
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t l = 0; l < 49; ++l) CHECK(ids_shuffle.at({b, ids_restore.at({b, l})}) == l);
  CHECK(gen.offset() == 2 + 3 + 2 + 3 + 49);
}
