// The HTTP server's router: method + path pattern -> route number, with path parameters.
//
// Patterns are '/'-separated segments; a segment "{name}" matches one whole non-empty path
// segment and binds it, percent-decoded, as path parameter `name`; any other segment must
// match literally, and literal segments win over parameters ("/a/new" beats "/a/{id}").
// Before matching, a request path is checked and refused (kBadPath) if it is not absolute,
// has a malformed percent escape, or if any decoded segment holds '/', NUL, a control
// character or "..": a handler never sees a parameter that could step out of a directory
// or name two resources at once. Handlers still validate their parameters' syntax.
//
// Thread safety: add() before the router is shared; find() is const and thread safe.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust::net {

class Router {
 public:
  enum class Outcome { kMatched, kNotFound, kMethodNotAllowed, kBadPath };
  struct Lookup {
    Outcome outcome = Outcome::kNotFound;
    std::size_t route = 0;  // for kMatched: what add() returned
    std::map<std::string, std::string> params;
    std::string allow;   // for kMethodNotAllowed: the methods the path accepts ("GET, PUT")
    std::string reason;  // for kBadPath
  };

  // Returns the route's number (0, 1, ... in the order added). `method` is matched
  // exactly; HEAD requests match GET routes.
  Result<std::size_t> add(std::string method, std::string pattern);
  // `raw_path` is the path of the request target as sent (no query, not yet decoded).
  Lookup find(std::string_view method, std::string_view raw_path) const;

 private:
  struct Segment {
    std::string text;  // literal text, or the parameter name
    bool is_param = false;
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<Segment> segments;
  };
  std::vector<Route> routes_;
};

// Splits and percent-decodes an absolute request path with the rules above; an Error
// (kFormat) whose message says what is wrong with it otherwise.
Result<std::vector<std::string>> decode_request_path(std::string_view raw_path);

}  // namespace ctrust::net
