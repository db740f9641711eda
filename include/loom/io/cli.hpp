#pragma once
// A small command-line parser for loom's tools: typed flags with defaults and help text,
// `--flag value` and `--flag=value`, boolean switches, generated --help. Unknown flags and bad
// values throw UsageError (a loom::Error) with a one-line message naming the flag; tools turn it
// into exit code 2.
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/error.hpp"

namespace loom::io {

class UsageError : public Error {
 public:
  using Error::Error;
};

class Cli {
 public:
  Cli(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  // Registers a flag bound to `target`, whose current value is the default shown in --help.
  Cli& flag(const std::string& name, std::string& target, const std::string& help) {
    return add(name, help, target, false, [&target](const std::string& v) { target = v; });
  }
  Cli& flag(const std::string& name, int64_t& target, const std::string& help) {
    return add(name, help, std::to_string(target), false, [&target, name](const std::string& v) { target = parse_int(name, v); });
  }
  Cli& flag(const std::string& name, int& target, const std::string& help) {
    return add(name, help, std::to_string(target), false,
               [&target, name](const std::string& v) { target = int(parse_int(name, v)); });
  }
  Cli& flag(const std::string& name, double& target, const std::string& help) {
    std::ostringstream def;
    def << target;
    return add(name, help, def.str(), false, [&target, name](const std::string& v) { target = parse_double(name, v); });
  }
  // A switch: `--name` sets true; `--name=false` / `--name=0` sets false.
  Cli& toggle(const std::string& name, bool& target, const std::string& help) {
    return add(name, help, target ? "on" : "off", true, [&target, name](const std::string& v) {
      if (v.empty() || v == "1" || v == "true" || v == "on") target = true;
      else if (v == "0" || v == "false" || v == "off") target = false;
      else throw UsageError("--" + name + ": expected no value, true or false, got '" + v + "'");
    });
  }

  // Parses argv; returns false when --help was printed (the tool should exit 0).
  bool parse(int argc, const char* const* argv, std::ostream& help_out) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        print_help(help_out);
        return false;
      }
      if (arg.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + arg + "' (flags start with --; see --help)");
      std::string name = arg.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      auto it = flags_.find(name);
      if (it == flags_.end()) throw UsageError("unknown flag --" + name + " (see --help)");
      Flag& f = it->second;
      if (!has_value && !f.is_switch) {
        if (i + 1 >= argc) throw UsageError("--" + name + ": missing value");
        value = argv[++i];
      }
      try {
        f.set(value);
      } catch (const UsageError&) {
        throw;
      } catch (const Error& e) {
        throw UsageError("--" + name + ": " + e.what());
      }
      given_.push_back(name);
    }
    return true;
  }

  bool given(const std::string& name) const {
    for (const auto& g : given_)
      if (g == name) return true;
    return false;
  }

  void print_help(std::ostream& os) const {
    os << "usage: " << program_ << " [options]\n\n" << summary_ << "\n\noptions (default in brackets):\n";
    for (const auto& name : order_) {
      const Flag& f = flags_.at(name);
      std::string head = "  --" + name + (f.is_switch ? "" : " VALUE");
      os << std::left << std::setw(26) << head << " " << f.help << " [" << f.default_value << "]\n";
    }
    os << std::left << std::setw(26) << "  --help" << " this text\n";
  }

 private:
  struct Flag {
    std::string help, default_value;
    bool is_switch;
    std::function<void(const std::string&)> set;
  };
  Cli& add(const std::string& name, const std::string& help, std::string def, bool is_switch,
           std::function<void(const std::string&)> set) {
    LOOM_CHECK(!flags_.count(name), "Cli: flag --", name, " defined twice");
    flags_[name] = Flag{help, std::move(def), is_switch, std::move(set)};
    order_.push_back(name);
    return *this;
  }
  static int64_t parse_int(const std::string& name, const std::string& v) {
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0') throw UsageError("--" + name + ": expected an integer, got '" + v + "'");
    return x;
  }
  static double parse_double(const std::string& name, const std::string& v) {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0') throw UsageError("--" + name + ": expected a number, got '" + v + "'");
    return x;
  }

  std::string program_, summary_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_, given_;
};

}  // namespace loom::io
