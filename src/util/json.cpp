#include "util/json.h"

#include <set>

#include "util/text.h"

namespace ctrust {
namespace {

using json = nlohmann::json;

// A SAX front end to nlohmann's DOM builder that refuses what the DOM would silently
// accept: duplicate keys (the last one would win) and nesting deeper than kMaxJsonDepth.
class StrictSax {
 public:
  StrictSax(json& root, std::size_t max_depth) : dom_(root, false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& s) {
    return dom_.number_float(v, s);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    if (!enter()) return false;
    keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(std::string& k) {
    if (!keys_.back().insert(k).second) {
      error_ = "duplicate key \"" + printable(k, 64) + "\"";
      return false;
    }
    return dom_.key(k);
  }
  bool end_object() {
    keys_.pop_back();
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (!enter()) return false;
    keys_.emplace_back();
    return dom_.start_array(n);
  }
  bool end_array() {
    keys_.pop_back();
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const nlohmann::detail::exception& ex) {
    std::string what = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> the rest.
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    error_ = what;
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ > max_depth_) {
      error_ = "nesting deeper than " + std::to_string(max_depth_) + " levels";
      return false;
    }
    return true;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::set<std::string>> keys_;
  std::size_t max_depth_;
  std::size_t depth_ = 0;
  std::string error_;
};

}  // namespace

Result<json> parse_json_strict(std::string_view text, std::size_t max_depth) {
  json root;
  StrictSax sax(root, max_depth);
  bool ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json, true);
  if (!ok) {
    return Error(Errc::kFormat,
                 "malformed JSON: " + (sax.error().empty() ? "parse error" : sax.error()));
  }
  return root;
}

}  // namespace ctrust
