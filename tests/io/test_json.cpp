// loom::json: parsing (kinds, exact integers, escapes, UTF-8, errors with line:column), writing
// (compact / pretty, escaping, refusal of NaN and infinity), accessors and initializer lists.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "loom/io/json.hpp"

using loom::json::Value;
using loom::json::parse;
using Catch::Contains;

TEST_CASE("json: scalars parse to the right kind", "[io][json]") {
  CHECK(parse("null").is_null());
  CHECK(parse(" true ").as_bool() == true);
  CHECK(parse("\tfalse\n").as_bool() == false);
  CHECK(parse("0").is_int());
  CHECK(parse("-0").as_int() == 0);
  CHECK(parse("42").as_int() == 42);
  CHECK(parse("1.5").is_double());
  CHECK(parse("1.5").as_number() == 1.5);
  CHECK(parse("-2.5e-3").as_number() == -2.5e-3);
  CHECK(parse("1E2").is_double());
  CHECK(parse("1E2").as_int() == 100);  // a double holding an exact integer converts
  CHECK(parse("\"hi\"").as_string() == "hi");
}

TEST_CASE("json: integers keep int64 exactness", "[io][json]") {
  CHECK(parse("9223372036854775807").as_int() == std::numeric_limits<int64_t>::max());
  CHECK(parse("-9223372036854775808").as_int() == std::numeric_limits<int64_t>::min());
  CHECK(parse("9007199254740993").as_int() == 9007199254740993LL);  // 2^53 + 1: not a double
  CHECK(Value(int64_t(9007199254740993LL)).dump() == "9007199254740993");
  // Beyond int64 it becomes a double rather than wrapping.
  const Value big = parse("9223372036854775808");
  CHECK(big.is_double());
  CHECK(big.as_number() == 9223372036854775808.0);
  REQUIRE_THROWS_WITH(parse("1.5").as_int(), Contains("expected an integer, found the number 1.5"));
  REQUIRE_THROWS_WITH(Value(uint64_t(1) << 63).dump(), Contains("does not fit the int64"));
}

TEST_CASE("json: double range", "[io][json]") {
  REQUIRE_THROWS_WITH(parse("1e400"), Contains("out of the range of a double"));
  REQUIRE_THROWS_WITH(parse("-123.4e307"), Contains("out of the range"));
  CHECK(parse("1e-400").as_number() == 0.0);
  CHECK(std::signbit(parse("-1e-400").as_number()));
  CHECK(parse("4.9406564584124654e-324").as_number() == std::numeric_limits<double>::denorm_min());
}

TEST_CASE("json: doubles round-trip bit for bit and stay doubles", "[io][json]") {
  std::mt19937_64 rng(7);
  std::vector<double> values = {0.1, 1.0 / 3, 1e-300, 5e-324, std::numeric_limits<double>::max(),
                                -0.0, 1.0, 100.0, 1e21, 123456789012345680.0};
  for (int i = 0; i < 500; ++i) {
    uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (std::isfinite(d)) values.push_back(d);
  }
  for (double d : values) {
    const std::string text = Value(d).dump();
    const Value back = parse(text);
    INFO(text);
    REQUIRE(back.is_double());
    const double r = back.as_number();
    REQUIRE(std::memcmp(&r, &d, sizeof d) == 0);
  }
  CHECK(Value(1.0).dump() == "1.0");
  CHECK(Value(-0.0).dump() == "-0.0");
  CHECK(Value(0.25f).dump() == "0.25");
}

TEST_CASE("json: strings, escapes and UTF-8", "[io][json]") {
  CHECK(parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(parse(R"("\u00e9")").as_string() == "\xc3\xa9");              // e acute
  CHECK(parse(R"("\u20AC")").as_string() == "\xe2\x82\xac");          // euro sign
  CHECK(parse(R"("\ud83d\ude00")").as_string() == "\xf0\x9f\x98\x80");  // U+1F600 via a surrogate pair
  CHECK(parse(R"("\u0000x")").as_string() == std::string("\0x", 2));
  CHECK(parse("\"\xf0\x9f\x98\x80 raw\"").as_string() == "\xf0\x9f\x98\x80 raw");

  REQUIRE_THROWS_WITH(parse(R"("\ud83d")"), Contains("low surrogate"));
  REQUIRE_THROWS_WITH(parse(R"("\ud83d\u0041")"), Contains("expected a low surrogate"));
  REQUIRE_THROWS_WITH(parse(R"("\ude00")"), Contains("unpaired low surrogate"));
  REQUIRE_THROWS_WITH(parse(R"("\u12G4")"), Contains("hex digits"));
  REQUIRE_THROWS_WITH(parse(R"("\x")"), Contains("after '\\', found 'x'"));
  REQUIRE_THROWS_WITH(parse("\"a\nb\""), Contains("raw control character"));
  REQUIRE_THROWS_WITH(parse("\"\xc3\x28\""), Contains("invalid UTF-8"));   // bad continuation byte
  REQUIRE_THROWS_WITH(parse("\"\xc0\xaf\""), Contains("invalid UTF-8"));   // overlong '/'
  REQUIRE_THROWS_WITH(parse("\"\xed\xa0\x80\""), Contains("invalid UTF-8"));  // encoded surrogate
  REQUIRE_THROWS_WITH(parse("\"abc"), Contains("close the string"));

  // Writing escapes quotes, backslashes and control characters; other characters pass through.
  CHECK(Value(std::string("a\"b\\c\n\x01\x1f\t\xc3\xa9", 11)).dump() == R"("a\"b\\c\n\u0001\u001f\té")");
  REQUIRE_THROWS_WITH(Value("\xff").dump(), Contains("not valid UTF-8"));
  // Every byte value 0..127 and a few multi-byte characters survive a round trip.
  std::string all;
  for (int c = 0; c < 128; ++c) all += char(c);
  all += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  CHECK(parse(Value(all).dump()).as_string() == all);
}

TEST_CASE("json: objects keep insertion order and refuse duplicate keys", "[io][json]") {
  const Value v = parse(R"({"zeta": 1, "alpha": [true, null], "mid": {"x": "y"}})");
  CHECK(v.as_object().keys() == std::vector<std::string>{"zeta", "alpha", "mid"});
  CHECK(v.dump() == R"({"zeta":1,"alpha":[true,null],"mid":{"x":"y"}})");
  REQUIRE_THROWS_WITH(parse(R"({"a": 1, "a": 2})"), Contains("line 1, column 10: duplicate key \"a\""));
  // Large objects switch from a linear scan to hashing: duplicates are caught either way.
  std::string big = "{";
  for (int i = 0; i < 40; ++i) big += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  CHECK(parse(big + "}").size() == 40);
  CHECK(parse(big + "}")["k39"].as_int() == 39);
  REQUIRE_THROWS_WITH(parse(big + ",\"k3\":0}"), Contains("duplicate key \"k3\""));
  REQUIRE_THROWS_WITH(parse(big + ",\"k39\":0}"), Contains("duplicate key \"k39\""));
  CHECK(parse("{}").as_object().empty());
  CHECK(parse("[]").as_array().empty());
}

TEST_CASE("json: parse errors give line, column and what was expected", "[io][json]") {
  const char* doc = "{\n  \"a\": 1,\n  \"b\" 2\n}";
  REQUIRE_THROWS_AS(parse(doc), loom::Error);
  REQUIRE_THROWS_WITH(parse(doc), Contains("line 3, column 7: expected ':' after object key \"b\", found '2'"));
  REQUIRE_THROWS_WITH(parse("[1, 2,]"), Contains("line 1, column 7: expected a JSON value"));
  REQUIRE_THROWS_WITH(parse("[1 2]"), Contains("expected ',' or ']'"));
  REQUIRE_THROWS_WITH(parse("{\"a\": 1 \"b\": 2}"), Contains("expected ',' or '}'"));
  REQUIRE_THROWS_WITH(parse("{1: 2}"), Contains("expected a string key"));
  REQUIRE_THROWS_WITH(parse(""), Contains("found the end of the input"));
  REQUIRE_THROWS_WITH(parse("   "), Contains("line 1, column 4"));
  REQUIRE_THROWS_WITH(parse("1 2"), Contains("expected the end of the input"));
  REQUIRE_THROWS_WITH(parse("tru"), Contains("expected 'true'"));
  REQUIRE_THROWS_WITH(parse("nul"), Contains("expected 'null'"));
  REQUIRE_THROWS_WITH(parse("01"), Contains("leading zeros"));
  REQUIRE_THROWS_WITH(parse("1."), Contains("after the decimal point"));
  REQUIRE_THROWS_WITH(parse("1e+"), Contains("exponent"));
  REQUIRE_THROWS_WITH(parse("-"), Contains("expected a digit"));
  REQUIRE_THROWS_WITH(parse("+1"), Contains("expected a JSON value"));
  REQUIRE_THROWS_WITH(parse("NaN"), Contains("expected a JSON value"));
  REQUIRE_THROWS_WITH(parse("[1,\n\x01]"), Contains("line 2, column 1: expected a JSON value (object, array, string, "
                                                    "number, true, false or null), found byte 0x01"));
  CHECK(parse("\xEF\xBB\xBF{\"bom\": 1}")["bom"].as_int() == 1);
}

TEST_CASE("json: nesting depth is bounded", "[io][json]") {
  const int ok = loom::json::kMaxDepth;
  CHECK(parse(std::string(size_t(ok), '[') + std::string(size_t(ok), ']')).is_array());
  const std::string deep(100000, '[');
  REQUIRE_THROWS_WITH(parse(deep), Contains("nesting deeper than"));
  REQUIRE_THROWS_WITH(parse(std::string(size_t(ok + 1), '[') + std::string(size_t(ok + 1), ']')), Contains("nesting"));
}

TEST_CASE("json: compact and pretty writing", "[io][json]") {
  Value cfg = {{"model", "vit"}, {"depth", 12}, {"lr", 1.5e-4}, {"groups", {2, 12}}, {"tags", Value::array()},
               {"opt", Value::object()}, {"ok", true}, {"none", nullptr}};
  CHECK(cfg.dump() ==
        R"({"model":"vit","depth":12,"lr":0.00015,"groups":[2,12],"tags":[],"opt":{},"ok":true,"none":null})");
  CHECK(cfg.dump(2) ==
        "{\n  \"model\": \"vit\",\n  \"depth\": 12,\n  \"lr\": 0.00015,\n  \"groups\": [\n    2,\n    12\n  ],\n"
        "  \"tags\": [],\n  \"opt\": {},\n  \"ok\": true,\n  \"none\": null\n}");
  CHECK(parse(cfg.dump(2)) == cfg);
  CHECK(parse(cfg.dump(0)) == cfg);
  CHECK(cfg.dump().find('\n') == std::string::npos);  // one line: safe for jsonl
}

TEST_CASE("json: NaN and infinity are refused on write, naming where", "[io][json]") {
  Value v = {{"metrics", {{"loss", std::nan("")}, {"acc", 0.5}}}};
  REQUIRE_THROWS_AS(v.dump(), loom::Error);
  REQUIRE_THROWS_WITH(v.dump(), Contains("$.metrics.loss") && Contains("NaN and infinity are refused"));
  Value arr = Value::array({1.0, 2.0, std::numeric_limits<double>::infinity()});
  REQUIRE_THROWS_WITH(arr.dump(2), Contains("$[2]"));
  REQUIRE_THROWS_WITH(Value(-std::numeric_limits<float>::infinity()).dump(), Contains("-inf"));
}

TEST_CASE("json: accessors and their errors", "[io][json]") {
  Value v = parse(R"({"name": "mae", "depth": 12, "ratios": [0.75, 0.5], "flag": false})");
  CHECK(v["name"].as_string() == "mae");
  CHECK(v.contains("depth"));
  CHECK_FALSE(v.contains("width"));
  CHECK(v.find("width") == nullptr);
  CHECK(v["ratios"].at(1).as_number() == 0.5);
  CHECK(v["ratios"].size() == 2);
  CHECK(v.size() == 4);
  CHECK(v["depth"].as_number() == 12.0);
  REQUIRE_THROWS_AS(v["width"], loom::Error);
  REQUIRE_THROWS_WITH(v["width"], Contains("missing key \"width\"") && Contains("\"name\", \"depth\""));
  REQUIRE_THROWS_WITH(v["ratios"].at(2), Contains("index 2 out of range for an array of 2"));
  REQUIRE_THROWS_WITH(v["name"].as_int(), Contains("expected an integer, found the string \"mae\""));
  REQUIRE_THROWS_WITH(v["depth"].as_string(), Contains("expected a string, found the integer 12"));
  REQUIRE_THROWS_WITH(v["flag"].as_array(), Contains("expected an array, found the boolean false"));
  REQUIRE_THROWS_WITH(v["ratios"]["x"], Contains("expected an object, found an array"));
  REQUIRE_THROWS_WITH(v.at(0), Contains("expected an array, found an object"));
  REQUIRE_THROWS_WITH(parse("null").as_bool(), Contains("expected a boolean, found null"));

  // Writing through accessors: set keeps the position of an existing key, appends new ones.
  v.set("depth", 24);
  v.set("extra", "x");
  v["ratios"].push_back(0.25);
  CHECK(v.as_object().keys() == std::vector<std::string>{"name", "depth", "ratios", "flag", "extra"});
  CHECK(v["depth"].as_int() == 24);
  CHECK(v["ratios"].size() == 3);
  Value fresh;
  fresh.set("a", 1);
  Value list;
  list.push_back("x");
  CHECK(fresh.dump() == R"({"a":1})");
  CHECK(list.dump() == R"(["x"])");
  CHECK(v.as_object().erase("extra"));
  CHECK_FALSE(v.contains("extra"));
}

TEST_CASE("json: initializer lists and equality", "[io][json]") {
  const Value obj = {{"a", 1}, {"b", {1, 2}}};
  CHECK(obj.is_object());
  const Value arr = {1, "two", 3.0};
  CHECK(arr.is_array());
  CHECK(arr.dump() == R"([1,"two",3.0])");
  // Pairs that should stay an array say so.
  const Value pairs = Value::array({Value::array({"a", 1}), Value::array({"b", 2})});
  CHECK(pairs.dump() == R"([["a",1],["b",2]])");
  CHECK(Value::object({{"k", Value::array({"x", 1})}}).dump() == R"({"k":["x",1]})");
  // Numbers compare by value across kinds; other kinds by structure; order of members matters.
  CHECK(Value(3) == Value(3.0));
  CHECK_FALSE(Value(3) == Value(3.5));
  CHECK_FALSE(Value(int64_t(9007199254740993LL)) == Value(9007199254740992.0));
  CHECK_FALSE(Value("3") == Value(3));
  CHECK(parse(R"({"a":1,"b":2})") == parse(R"({ "a" : 1 , "b" : 2 })"));
  CHECK_FALSE(parse(R"({"a":1,"b":2})") == parse(R"({"b":2,"a":1})"));
}

TEST_CASE("json: mutated documents parse or throw loom::Error, and re-dump stably", "[io][json]") {
  const std::string base =
      R"({"name":"m\u00e9","shape":[3,4,-5],"x":1.25e-3,"ok":[true,false,null],"s":"\ud83d\ude00 \"q\""})";
  std::mt19937 rng(1234);
  const std::string alphabet = "{}[]\",:\\u0123456789.eE+-truefalsn \n\t\xc3\xa9\xff";
  int parsed = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string doc = base;
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % doc.size();
      switch (rng() % 3) {
        case 0: doc[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: doc.erase(at, 1); break;
        default: doc.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    try {
      const Value v = parse(doc);
      ++parsed;
      REQUIRE(parse(v.dump()) == v);
    } catch (const loom::Error&) {
    }
  }
  CHECK(parsed > 0);
}
