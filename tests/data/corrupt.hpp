#pragma once
// Helpers for the data tests that damage files on purpose: whole-file byte I/O, reading every
// sample of a dataset spec, and seeded corruptions of a file's bytes (byte flips, bursts,
// truncations, fields overwritten with extreme values).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/dataset.hpp"

namespace loom::test {

using Bytes = std::vector<unsigned char>;

inline Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes the first `count` bytes (all by default), replacing the file.
inline void write_bytes(const std::string& path, const Bytes& bytes, size_t count = size_t(-1)) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(std::min(count, bytes.size())));
}

// Opens a dataset and reads every sample and name; returns the first loom::Error's message, ""
// when everything read. Any other exception propagates (and fails the calling test).
inline std::string read_everything(const std::string& spec) {
  try {
    const auto ds = loom::data::open_dataset(spec);
    for (int64_t i = 0; i < ds->size(); ++i) {
      ds->get(i);
      ds->name(i);
    }
  } catch (const loom::Error& e) {
    return e.what();
  }
  return "";
}

// Little-endian field access inside a byte buffer.
template <class U>
U get_le(const Bytes& b, size_t at) {
  U v{};
  std::memcpy(&v, b.data() + at, sizeof(U));
  return v;
}
template <class U>
void put_le(Bytes& b, size_t at, U v) {
  if (at + sizeof(U) <= b.size()) std::memcpy(b.data() + at, &v, sizeof(U));
}

// A value a corrupt field might hold: 0, 1, all ones, the top bit, half the range, or random.
template <class U>
U extreme_value(std::mt19937& rng) {
  switch (rng() % 6) {
    case 0: return U(0);
    case 1: return U(1);
    case 2: return U(~U(0));
    case 3: return U(U(1) << (8 * sizeof(U) - 1));
    case 4: return U(~U(0) >> 1);
    default: return U(rng());
  }
}

// One damaged copy and what was done to it (for failure messages).
struct Corruption {
  std::string what;
  Bytes bytes;
};

// The kinds of damage random_corruption() picks from.
enum class Damage { flip, burst, truncate, field };

// A copy of `original` with one seeded kind of damage. `focus` bytes at the start (the header) get
// half of the flips and every field change; fields are 1, 2, 4 or 8 bytes at aligned offsets.
inline Corruption random_corruption(const Bytes& original, std::mt19937& rng, size_t focus) {
  Corruption c{"", original};
  const size_t n = original.size();
  focus = std::max<size_t>(1, std::min(focus, n));
  auto where = [&](bool header) { return size_t(rng() % (header ? focus : n)); };
  switch (Damage(rng() % 4)) {
    case Damage::flip: {
      const size_t at = where(rng() % 2 == 0);
      const unsigned char mask = static_cast<unsigned char>(1 + rng() % 255);
      c.bytes[at] ^= mask;
      c.what = "byte " + std::to_string(at) + " xor " + std::to_string(mask);
      break;
    }
    case Damage::burst: {
      const size_t at = where(rng() % 2 == 0), len = 2 + rng() % 31;
      for (size_t k = at; k < std::min(n, at + len); ++k) c.bytes[k] = static_cast<unsigned char>(rng());
      c.what = std::to_string(len) + " random bytes at " + std::to_string(at);
      break;
    }
    case Damage::truncate: {
      const size_t keep = rng() % 3 == 0 ? where(true) : where(false);
      c.bytes.resize(keep);
      c.what = "truncated to " + std::to_string(keep) + " of " + std::to_string(n) + " bytes";
      break;
    }
    case Damage::field: {
      const size_t width = size_t(1) << (rng() % 4);
      const size_t at = where(true) / width * width;
      switch (width) {
        case 1: put_le(c.bytes, at, extreme_value<uint8_t>(rng)); break;
        case 2: put_le(c.bytes, at, extreme_value<uint16_t>(rng)); break;
        case 4: put_le(c.bytes, at, extreme_value<uint32_t>(rng)); break;
        default: put_le(c.bytes, at, extreme_value<uint64_t>(rng)); break;
      }
      c.what = std::to_string(width) + "-byte field at " + std::to_string(at) + " overwritten";
      break;
    }
  }
  return c;
}

}  // namespace loom::test
