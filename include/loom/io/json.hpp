#pragma once
// loom::json — a small JSON value, parser and writer for configs, metrics logs (jsonl) and
// safetensors headers.
//
//   json::Value cfg = {{"model", "vit_small"}, {"depth", 12}, {"lr", 1.5e-4}, {"groups", {2, 12}}};
//   std::string line = cfg.dump();        // compact, one line: {"model":"vit_small","depth":12,...}
//   std::string pretty = cfg.dump(2);     // indented by 2 spaces
//   json::Value back = json::parse(line);
//   int64_t depth = back["depth"].as_int();  // a missing key throws loom::Error naming it
//
// Semantics:
// - Numbers keep their kind: an integer literal that fits int64 stays an exact int64; anything with
//   a fraction or exponent (or too large for int64) is a double. Doubles are written in their
//   shortest round-trip form and always with a '.' or exponent, so they read back as doubles.
// - Objects keep insertion order (written in that order); parse() rejects duplicate keys.
// - Strings are UTF-8; \uXXXX escapes incl. surrogate pairs are decoded, invalid UTF-8 and lone
//   surrogates are rejected. The writer escapes '"', '\\' and control characters only.
// - NaN and infinity are not JSON: dump() refuses them, naming where they sit ($.metrics.loss).
// - Errors are loom::Error; parse errors say "line L, column C" (byte column, 1-based) and what was
//   expected. Nesting deeper than kMaxDepth is refused (hostile input cannot overflow the stack).
//
// Initializer lists: a braced list whose elements are all two-element lists starting with a string
// becomes an object, anything else an array (as nlohmann::json does). Use Value::array({...}) or
// Value::object({...}) where that guess is not what you mean.
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "loom/core/error.hpp"

namespace loom::json {

class Value;
namespace detail {
class Parser;
}

// An object: key/value members in insertion order. Lookup is linear, which is faster than hashing
// for the few dozen keys of a config; parse() keeps keys unique.
class Object {
 public:
  using Member = std::pair<std::string, Value>;

  Object() = default;
  Object(std::initializer_list<Member> members);

  size_t size() const { return members_.size(); }
  bool empty() const { return members_.empty(); }
  auto begin() { return members_.begin(); }
  auto end() { return members_.end(); }
  auto begin() const { return members_.begin(); }
  auto end() const { return members_.end(); }

  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Throws loom::Error naming the missing key (and the keys that exist).
  const Value& operator[](std::string_view key) const;
  Value& operator[](std::string_view key);
  // Replaces the value of an existing key (keeping its position) or appends a new member.
  Value& set(std::string key, Value value);
  bool erase(std::string_view key);
  std::vector<std::string> keys() const;

  friend bool operator==(const Object& a, const Object& b);

 private:
  friend class detail::Parser;  // appends parsed members directly: it has checked them for duplicates
  [[noreturn]] void missing(std::string_view key) const;
  std::vector<Member> members_;
};

using Array = std::vector<Value>;

enum class Kind : uint8_t { null, boolean, integer, real, string, array, object };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::null: return "null";
    case Kind::boolean: return "a boolean";
    case Kind::integer: return "an integer";
    case Kind::real: return "a floating-point number";
    case Kind::string: return "a string";
    case Kind::array: return "an array";
    case Kind::object: return "an object";
  }
  return "?";
}

class Value {
 public:
  // ---- construction -----------------------------------------------------------------------------
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(char) = delete;  // a char is neither a number nor a string here: say which
  Value(bool b) : kind_(Kind::boolean), bool_(b) {}
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  Value(I i) : kind_(Kind::integer) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(int64_t))
      LOOM_CHECK(i <= uint64_t(std::numeric_limits<int64_t>::max()), "json: unsigned integer ", i,
                 " does not fit the int64 that JSON integers are kept in");
    int_ = static_cast<int64_t>(i);
  }
  template <std::floating_point F>
  Value(F d) : kind_(Kind::real), real_(static_cast<double>(d)) {}
  Value(const char* s) : kind_(Kind::string), string_(s) {}
  Value(std::string s) : kind_(Kind::string), string_(std::move(s)) {}
  Value(std::string_view s) : kind_(Kind::string), string_(s) {}
  Value(Array a) : kind_(Kind::array), array_(std::move(a)) {}
  Value(Object o) : kind_(Kind::object), object_(std::move(o)) {}
  // {{"key", value}, ...} -> object; any other list -> array (see the header comment).
  Value(std::initializer_list<Value> list) {
    bool looks_like_object = list.size() > 0;
    for (const Value& v : list)
      looks_like_object = looks_like_object && v.is_array() && v.array_.size() == 2 && v.array_[0].is_string();
    if (looks_like_object) {
      kind_ = Kind::object;
      for (const Value& v : list) object_.set(v.array_[0].string_, v.array_[1]);
    } else {
      kind_ = Kind::array;
      array_.assign(list.begin(), list.end());
    }
  }
  static Value array(std::initializer_list<Value> list = {}) { return Value(Array(list)); }
  static Value object(std::initializer_list<Object::Member> members = {}) { return Value(Object(members)); }

  // ---- kind ---------------------------------------------------------------------------------------
  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  bool is_number() const { return kind_ == Kind::integer || kind_ == Kind::real; }
  bool is_int() const { return kind_ == Kind::integer; }
  bool is_double() const { return kind_ == Kind::real; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }

  // ---- typed access (throw loom::Error naming the expected and the actual kind) ------------------
  bool as_bool() const {
    expect(Kind::boolean);
    return bool_;
  }
  // Any number as a double (an int64 beyond 2^53 rounds).
  double as_number() const {
    if (kind_ == Kind::integer) return static_cast<double>(int_);
    expect(Kind::real);
    return real_;
  }
  // An integer, or a double holding an exact integer in int64 range (e.g. 3.0 or 1e3).
  int64_t as_int() const {
    if (kind_ == Kind::integer) return int_;
    int64_t i = 0;
    if (kind_ == Kind::real && exact_int64(real_, i)) return i;
    loom::detail::fail("json: expected an integer, found ", describe());
  }
  const std::string& as_string() const {
    expect(Kind::string);
    return string_;
  }
  const Array& as_array() const {
    expect(Kind::array);
    return array_;
  }
  Array& as_array() {
    expect(Kind::array);
    return array_;
  }
  const Object& as_object() const {
    expect(Kind::object);
    return object_;
  }
  Object& as_object() {
    expect(Kind::object);
    return object_;
  }

  // ---- containers -------------------------------------------------------------------------------
  // Object member; throws naming the key when it is missing (or when this is not an object).
  const Value& operator[](std::string_view key) const { return as_object()[key]; }
  Value& operator[](std::string_view key) { return as_object()[key]; }
  bool contains(std::string_view key) const { return as_object().contains(key); }
  // Object member or nullptr.
  const Value* find(std::string_view key) const { return as_object().find(key); }
  // Sets an object member (turns a null value into an object first); returns the stored value.
  Value& set(std::string key, Value value) {
    if (is_null()) *this = Value(Object());
    return as_object().set(std::move(key), std::move(value));
  }
  // Array element with bounds check.
  const Value& at(size_t i) const {
    const Array& a = as_array();
    LOOM_CHECK(i < a.size(), "json: index ", i, " out of range for an array of ", a.size(), " elements");
    return a[i];
  }
  Value& at(size_t i) {
    Array& a = as_array();
    LOOM_CHECK(i < a.size(), "json: index ", i, " out of range for an array of ", a.size(), " elements");
    return a[i];
  }
  // Appends to an array (turns a null value into an array first).
  Value& push_back(Value v) {
    if (is_null()) *this = Value(Array());
    Array& a = as_array();
    a.push_back(std::move(v));
    return a.back();
  }
  // Number of elements of an array or members of an object.
  size_t size() const {
    if (kind_ == Kind::object) return object_.size();
    return as_array().size();
  }

  // ---- writing ------------------------------------------------------------------------------------
  // Compact single line when indent < 0 (one record per line for jsonl), else pretty-printed.
  std::string dump(int indent = -1) const;
  friend std::ostream& operator<<(std::ostream& os, const Value& v) { return os << v.dump(); }

  // Structural equality; an integer equals a double only when both hold the same number.
  friend bool operator==(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
      if (a.kind_ == b.kind_) return a.kind_ == Kind::integer ? a.int_ == b.int_ : a.real_ == b.real_;
      const Value& i = a.is_int() ? a : b;
      const Value& d = a.is_int() ? b : a;
      int64_t exact = 0;
      return exact_int64(d.real_, exact) && exact == i.int_;
    }
    if (a.kind_ != b.kind_) return false;
    switch (a.kind_) {
      case Kind::null: return true;
      case Kind::boolean: return a.bool_ == b.bool_;
      case Kind::string: return a.string_ == b.string_;
      case Kind::array: return a.array_ == b.array_;
      case Kind::object: return a.object_ == b.object_;
      default: return false;
    }
  }

  // A short description for error messages: the kind and, for scalars, the value.
  std::string describe() const {
    switch (kind_) {
      case Kind::boolean: return bool_ ? "the boolean true" : "the boolean false";
      case Kind::integer: return "the integer " + std::to_string(int_);
      case Kind::real: {
        char buf[32];
        const auto result = std::to_chars(buf, buf + sizeof buf, real_);
        return "the number " + std::string(buf, result.ptr);
      }
      case Kind::string:
        return "the string \"" + (string_.size() > 40 ? string_.substr(0, 40) + "..." : string_) + "\"";
      default: return kind_name(kind_);
    }
  }

 private:
  // Whether d holds an integer in int64 range, and which.
  static bool exact_int64(double d, int64_t& out) {
    if (!(std::nearbyint(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return false;
    out = static_cast<int64_t>(d);
    return true;
  }
  void expect(Kind k) const {
    LOOM_CHECK(kind_ == k, "json: expected ", kind_name(k), ", found ", describe());
  }

  Kind kind_ = Kind::null;
  bool bool_ = false;
  int64_t int_ = 0;
  double real_ = 0;
  std::string string_;
  Array array_;
  Object object_;
};

// ---- Object members (need the complete Value) ----------------------------------------------------
inline Object::Object(std::initializer_list<Member> members) {
  for (const Member& m : members) set(m.first, m.second);
}
inline const Value* Object::find(std::string_view key) const {
  for (const Member& m : members_)
    if (m.first == key) return &m.second;
  return nullptr;
}
inline Value* Object::find(std::string_view key) {
  for (Member& m : members_)
    if (m.first == key) return &m.second;
  return nullptr;
}
inline const Value& Object::operator[](std::string_view key) const {
  if (const Value* v = find(key)) return *v;
  missing(key);
}
inline Value& Object::operator[](std::string_view key) {
  if (Value* v = find(key)) return *v;
  missing(key);
}
inline Value& Object::set(std::string key, Value value) {
  if (Value* v = find(key)) return *v = std::move(value);
  members_.emplace_back(std::move(key), std::move(value));
  return members_.back().second;
}
inline bool Object::erase(std::string_view key) {
  for (auto it = members_.begin(); it != members_.end(); ++it)
    if (it->first == key) {
      members_.erase(it);
      return true;
    }
  return false;
}
inline std::vector<std::string> Object::keys() const {
  std::vector<std::string> out;
  out.reserve(members_.size());
  for (const Member& m : members_) out.push_back(m.first);
  return out;
}
inline bool operator==(const Object& a, const Object& b) { return a.members_ == b.members_; }
inline void Object::missing(std::string_view key) const {
  std::string known;
  for (size_t i = 0; i < members_.size() && i < 20; ++i) known += (i ? ", \"" : "\"") + members_[i].first + "\"";
  if (members_.size() > 20) known += ", ...";
  loom::detail::fail("json: missing key \"", key, "\" (the object has ",
               members_.empty() ? std::string("no keys") : "keys " + known, ")");
}

namespace detail {

// Length of the UTF-8 sequence starting at s[i] if it is well formed (no overlongs, no surrogates,
// at most U+10FFFF), else 0.
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f;
  else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f;
  else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

inline void write_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = utf8_sequence_length(s, i);
      LOOM_CHECK(n > 0, "json::dump: string is not valid UTF-8 (byte 0x", kHex[c >> 4], kHex[c & 15],
                 " at offset ", i, ")");
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += char(c);
        }
    }
    ++i;
  }
  out += '"';
}

inline void write_double(std::string& out, double d, const std::string& path) {
  LOOM_CHECK(std::isfinite(d), "json::dump: ", d, " at ", path,
             " is not representable in JSON (NaN and infinity are refused)");
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
  std::string_view text(buf, size_t(end - buf));
  out.append(text);
  if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";  // stays a double on re-read
}

}  // namespace detail

// ---- writer ----------------------------------------------------------------------------------------
namespace detail {
inline void write_value(std::string& out, const Value& v, int indent, int depth, std::string& path) {
  const auto newline = [&](int level) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent) * size_t(level), ' ');
  };
  switch (v.kind()) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Kind::integer: out += std::to_string(v.as_int()); break;
    case Kind::real: write_double(out, v.as_number(), path); break;
    case Kind::string: write_string(out, v.as_string()); break;
    case Kind::array: {
      const Array& a = v.as_array();
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        const size_t mark = path.size();
        path += "[" + std::to_string(i) + "]";
        write_value(out, a[i], indent, depth + 1, path);
        path.resize(mark);
      }
      if (!a.empty()) newline(depth);
      out += ']';
      break;
    }
    case Kind::object: {
      const Object& o = v.as_object();
      out += '{';
      bool first = true;
      for (const auto& [key, member] : o) {
        if (!first) out += ',';
        first = false;
        newline(depth + 1);
        write_string(out, key);
        out += indent < 0 ? ":" : ": ";
        const size_t mark = path.size();
        path += "." + key;
        write_value(out, member, indent, depth + 1, path);
        path.resize(mark);
      }
      if (!o.empty()) newline(depth);
      out += '}';
      break;
    }
  }
}
}  // namespace detail

inline std::string Value::dump(int indent) const {
  std::string out, path = "$";
  detail::write_value(out, *this, indent, 0, path);
  return out;
}

// ---- parser ------------------------------------------------------------------------------------------
inline constexpr int kMaxDepth = 512;

namespace detail {

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Value parse_document() {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;  // a UTF-8 byte order mark is ignored
    skip_space();
    if (pos_ >= s_.size()) error("expected a JSON value, found the end of the input");
    Value v = parse_value(0);
    skip_space();
    if (pos_ < s_.size()) error("expected the end of the input after the JSON value, found " + found());
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const { error_at(pos_, what); }
  [[noreturn]] void error_at(size_t at, const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    loom::detail::fail("json: line ", line, ", column ", column, ": ", what);
  }
  // The character at pos_, quoted, for messages.
  std::string found() const {
    if (pos_ >= s_.size()) return "the end of the input";
    const unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return std::string("'") + char(c) + "'";
    static constexpr char kHex[] = "0123456789abcdef";
    return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 15];
  }

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool consume(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Value parse_value(int depth) {
    if (pos_ >= s_.size()) error("expected a JSON value, found the end of the input");
    switch (s_[pos_]) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Value(parse_string());
      case 't': return parse_literal("true", Value(true));
      case 'f': return parse_literal("false", Value(false));
      case 'n': return parse_literal("null", Value());
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return parse_number();
        error("expected a JSON value (object, array, string, number, true, false or null), found " + found());
    }
  }

  Value parse_literal(std::string_view word, Value v) {
    if (s_.substr(pos_, word.size()) != word) error("expected '" + std::string(word) + "', found " + found());
    pos_ += word.size();
    return v;
  }

  void check_depth(int depth) const {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  }

  Value parse_object(int depth) {
    check_depth(depth);
    ++pos_;  // '{'
    Object obj;
    std::unordered_set<std::string> seen;  // used once the object outgrows a linear scan
    skip_space();
    if (consume('}')) return Value(std::move(obj));
    while (true) {
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key in object, found " + found());
      const size_t key_at = pos_;
      std::string key = parse_string();
      if (is_duplicate(obj, seen, key)) error_at(key_at, "duplicate key \"" + key + "\" in object");
      skip_space();
      if (!consume(':')) error("expected ':' after object key \"" + key + "\", found " + found());
      skip_space();
      Value v = parse_value(depth);
      obj.members_.emplace_back(std::move(key), std::move(v));  // unique (checked above): no linear find
      skip_space();
      if (consume(',')) continue;
      if (consume('}')) return Value(std::move(obj));
      error("expected ',' or '}' after an object member, found " + found());
    }
  }

  // Small objects are scanned; big ones (a safetensors header with thousands of tensors) hashed.
  // Once in hashed mode every checked key is recorded, since it is appended right after.
  static bool is_duplicate(const Object& obj, std::unordered_set<std::string>& seen, const std::string& key) {
    constexpr size_t kScanLimit = 16;
    const auto& members = obj.members_;
    if (members.size() < kScanLimit) {
      for (const auto& m : members)
        if (m.first == key) return true;
      return false;
    }
    if (seen.empty())
      for (const auto& m : members) seen.insert(m.first);
    return !seen.insert(key).second;
  }

  Value parse_array(int depth) {
    check_depth(depth);
    ++pos_;  // '['
    Array arr;
    skip_space();
    if (consume(']')) return Value(std::move(arr));
    while (true) {
      skip_space();
      arr.push_back(parse_value(depth));
      skip_space();
      if (consume(',')) continue;
      if (consume(']')) return Value(std::move(arr));
      error("expected ',' or ']' after an array element, found " + found());
    }
  }

  uint32_t parse_hex4() {
    uint32_t cp = 0;
    for (int k = 0; k < 4; ++k, ++pos_) {
      if (pos_ >= s_.size()) error("expected 4 hex digits after \\u, found the end of the input");
      const char c = s_[pos_];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= uint32_t(c - 'A' + 10);
      else error("expected 4 hex digits after \\u, found " + found());
    }
    return cp;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("expected '\"' to close the string, found the end of the input");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) error("expected an escape sequence instead of raw control character " + found() + " in string");
      if (c >= 0x80) {
        const size_t n = utf8_sequence_length(s_, pos_);
        if (n == 0) error("invalid UTF-8 sequence in string at " + found());
        out.append(s_.substr(pos_, n));
        pos_ += n;
        continue;
      }
      if (c != '\\') {
        out += char(c);
        ++pos_;
        continue;
      }
      const size_t escape_at = pos_;
      ++pos_;
      if (pos_ >= s_.size()) error("expected an escape character after '\\', found the end of the input");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) error_at(escape_at, "unpaired low surrogate \\u" + hex(cp) + " in string");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (s_.substr(pos_, 2) != "\\u")
              error_at(escape_at, "expected a \\u low surrogate after high surrogate \\u" + hex(cp));
            pos_ += 2;
            const uint32_t low = parse_hex4();
            if (low < 0xdc00 || low > 0xdfff)
              error_at(escape_at, "expected a low surrogate (\\udc00-\\udfff) after \\u" + hex(cp) + ", found \\u" + hex(low));
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          error("expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u after '\\', found " + found());
      }
    }
  }
  static std::string hex(uint32_t v) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s(4, '0');
    for (int k = 3; k >= 0; --k, v >>= 4) s[size_t(k)] = kHex[v & 15];
    return s;
  }

  Value parse_number() {
    const size_t start = pos_;
    const auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    consume('-');
    const size_t int_start = pos_;
    const size_t int_digits = digits();
    if (int_digits == 0) error("expected a digit in number, found " + found());
    if (int_digits > 1 && s_[int_start] == '0') error_at(int_start, "leading zeros are not allowed in a number");
    bool integral = true;
    int64_t exponent = 0;
    if (consume('.')) {
      integral = false;
      if (digits() == 0) error("expected a digit after the decimal point, found " + found());
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      const bool negative = pos_ < s_.size() && s_[pos_] == '-';
      if (!consume('+')) consume('-');
      const size_t exp_start = pos_;
      if (digits() == 0) error("expected a digit in the exponent, found " + found());
      const std::string_view e = s_.substr(exp_start, pos_ - exp_start);
      exponent = e.size() > 9 ? 999999999 : std::stoll(std::string(e));
      if (negative) exponent = -exponent;
    }
    const std::string_view text = s_.substr(start, pos_ - start);
    if (integral) {
      int64_t i = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (ec == std::errc() && end == text.data() + text.size()) return Value(i);
      // too large for int64: falls through to double
    }
    double d = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (ec == std::errc::result_out_of_range) {
      // Decimal order of magnitude of the leading significant digit decides overflow vs underflow.
      const std::string_view mantissa = text.substr(text[0] == '-' ? 1 : 0);
      const size_t first_significant = mantissa.find_first_of("123456789");
      const size_t point = std::min(mantissa.find('.'), mantissa.find_first_of("eE"));
      const int64_t order = first_significant == std::string_view::npos ? -1
                            : first_significant < point ? int64_t(point - first_significant) + exponent
                                                        : exponent - int64_t(first_significant - point) + 1;
      if (order > 0) error_at(start, "number " + std::string(text) + " is out of the range of a double");
      return Value(text[0] == '-' ? -0.0 : 0.0);  // underflow rounds to zero, as strtod does
    }
    if (ec != std::errc() || end != text.data() + text.size()) error_at(start, "malformed number " + std::string(text));
    return Value(d);
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace detail

// Parses one JSON document (surrounding whitespace allowed, nothing else after it).
inline Value parse(std::string_view text) { return detail::Parser(text).parse_document(); }

}  // namespace loom::json
