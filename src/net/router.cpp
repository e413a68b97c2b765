#include "net/router.h"

#include <utility>

#include "util/text.h"

namespace ctrust::net {
namespace {

// RFC 9110 token characters, for method names.
bool is_token_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percent_decode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out += raw[i];
      continue;
    }
    int hi = i + 2 < raw.size() ? hex_value(raw[i + 1]) : -1;
    int lo = i + 2 < raw.size() ? hex_value(raw[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return Error(Errc::kFormat, "malformed percent escape in the path");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

Result<std::vector<std::string>> decode_request_path(std::string_view raw_path) {
  if (raw_path.empty() || raw_path.front() != '/') {
    return Error(Errc::kFormat, "the request path must start with '/'");
  }
  std::vector<std::string> segments;
  std::string_view rest = raw_path.substr(1);
  for (;;) {
    std::size_t slash = rest.find('/');
    std::string_view raw = rest.substr(0, slash);
    CTRUST_ASSIGN_OR_RETURN(std::string segment, percent_decode(raw));
    for (unsigned char c : segment) {
      if (c == '/') return Error(Errc::kFormat, "an encoded '/' (%2F) in the path");
      if (c < 0x20 || c == 0x7f) return Error(Errc::kFormat, "a control character in the path");
    }
    if (segment.find("..") != std::string::npos) {
      return Error(Errc::kFormat, "\"..\" in the path");
    }
    segments.push_back(std::move(segment));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return segments;
}

Result<std::size_t> Router::add(std::string method, std::string pattern) {
  if (method.empty()) return Error(Errc::kInvalidArgument, "a route needs a method");
  for (unsigned char c : method) {
    if (!is_token_char(c)) {
      return Error(Errc::kInvalidArgument, "\"" + printable(method) + "\" is not an HTTP method");
    }
  }
  if (pattern.empty() || pattern.front() != '/') {
    return Error(Errc::kInvalidArgument,
                 "route pattern \"" + printable(pattern) + "\" must start with '/'");
  }
  Route route{std::move(method), std::move(pattern), {}};
  std::string_view rest = std::string_view(route.pattern).substr(1);
  for (;;) {
    std::size_t slash = rest.find('/');
    std::string_view text = rest.substr(0, slash);
    Segment segment;
    if (!text.empty() && text.front() == '{') {
      if (text.size() < 3 || text.back() != '}' ||
          text.substr(1, text.size() - 2).find_first_of("{}") != std::string_view::npos) {
        return Error(Errc::kInvalidArgument, "route pattern \"" + printable(route.pattern) +
                                                 "\" has a malformed parameter segment");
      }
      segment.text = std::string(text.substr(1, text.size() - 2));
      segment.is_param = true;
      for (const Segment& s : route.segments) {
        if (s.is_param && s.text == segment.text) {
          return Error(Errc::kInvalidArgument, "route pattern \"" + printable(route.pattern) +
                                                   "\" names parameter " + segment.text + " twice");
        }
      }
    } else {
      if (text.find_first_of("{}%") != std::string_view::npos) {
        return Error(Errc::kInvalidArgument, "route pattern \"" + printable(route.pattern) +
                                                 "\" has '{', '}' or '%' inside a segment");
      }
      segment.text = std::string(text);
    }
    route.segments.push_back(std::move(segment));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  for (const Route& r : routes_) {
    bool same = r.method == route.method && r.segments.size() == route.segments.size();
    for (std::size_t i = 0; same && i < r.segments.size(); ++i) {
      same = r.segments[i].is_param == route.segments[i].is_param &&
             (r.segments[i].is_param || r.segments[i].text == route.segments[i].text);
    }
    if (same) {
      return Error(Errc::kInvalidArgument, "route " + route.method + " " + route.pattern +
                                               " clashes with " + r.method + " " + r.pattern);
    }
  }
  routes_.push_back(std::move(route));
  return routes_.size() - 1;
}

Router::Lookup Router::find(std::string_view method, std::string_view raw_path) const {
  Lookup lookup;
  auto decoded = decode_request_path(raw_path);
  if (!decoded) {
    lookup.outcome = Outcome::kBadPath;
    lookup.reason = decoded.error().message();
    return lookup;
  }
  std::string_view wanted = method == "HEAD" ? std::string_view("GET") : method;
  // Among matching routes the one whose first parameter comes latest wins: literal
  // segments are more specific than parameters.
  const Route* best = nullptr;
  std::size_t best_index = 0;
  std::size_t best_score = 0;
  for (std::size_t index = 0; index < routes_.size(); ++index) {
    const Route& r = routes_[index];
    if (r.segments.size() != decoded->size()) continue;
    bool match = true;
    std::size_t score = r.segments.size();
    for (std::size_t i = 0; match && i < r.segments.size(); ++i) {
      const Segment& s = r.segments[i];
      if (s.is_param) {
        match = !(*decoded)[i].empty();
        if (score == r.segments.size()) score = i;
      } else {
        match = s.text == (*decoded)[i];
      }
    }
    if (!match) continue;
    if (r.method != wanted) {
      bool listed = false;
      std::string_view allow = lookup.allow;
      while (!allow.empty() && !listed) {
        std::size_t comma = allow.find(", ");
        listed = allow.substr(0, comma) == r.method;
        allow = comma == std::string_view::npos ? std::string_view() : allow.substr(comma + 2);
      }
      if (!listed) {
        if (!lookup.allow.empty()) lookup.allow += ", ";
        lookup.allow += r.method;
      }
      continue;
    }
    if (best == nullptr || score > best_score) {
      best = &r;
      best_index = index;
      best_score = score;
    }
  }
  if (best == nullptr) {
    lookup.outcome = lookup.allow.empty() ? Outcome::kNotFound : Outcome::kMethodNotAllowed;
    return lookup;
  }
  for (std::size_t i = 0; i < best->segments.size(); ++i) {
    if (best->segments[i].is_param) lookup.params[best->segments[i].text] = (*decoded)[i];
  }
  lookup.outcome = Outcome::kMatched;
  lookup.route = best_index;
  lookup.allow.clear();
  return lookup;
}

}  // namespace ctrust::net
