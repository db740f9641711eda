#pragma once
// loom::Error: the one exception type the library throws on bad input or misuse.
// Messages name the operation and what was expected, e.g. "matmul: inner dims differ: [3, 4] x [5, 2]".
#include <sstream>
#include <stdexcept>
#include <string>

namespace loom {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw Error(message.str());
}
}  // namespace detail

}  // namespace loom

// LOOM_CHECK(cond, "op: ", detail, ...) throws loom::Error with the concatenated message parts.
#define LOOM_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::loom::detail::fail(__VA_ARGS__); \
  } while (0)
