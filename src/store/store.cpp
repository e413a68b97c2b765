// open_store: picks the backend from the URL; and the password hygiene for libpq URLs.
#include "store/store.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "store/sql.h"
#include "util/text.h"

namespace ctrust::store {
namespace {

constexpr std::string_view kSqlitePrefix = "sqlite:";
constexpr std::string_view kRedacted = "***";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

struct Span {
  std::size_t begin;
  std::size_t size;
};

// Where `url` carries a password: after the ':' of the user info (taking the last '@' of
// the authority, so an unencoded '@' in a password is covered), the value of any
// "password=" parameter (also in a key=value connection string), and a non-numeric "port"
// of an authority without user info (a password written without the '@').
std::vector<Span> secret_spans(std::string_view url) {
  std::vector<Span> spans;
  if (auto scheme = url.find("://"); scheme != std::string_view::npos) {
    std::size_t start = scheme + 3;
    std::size_t end = url.find('/', start);
    if (end == std::string_view::npos) end = url.size();
    std::string_view authority = url.substr(start, end - start);
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
      if (auto colon = authority.find(':'); colon != std::string_view::npos && colon < at) {
        spans.push_back({start + colon + 1, at - colon - 1});
      }
    } else {
      std::string_view hostport = authority.substr(0, authority.find('?'));
      auto colon = hostport.rfind(':');
      if (colon != std::string_view::npos && hostport.find(']', colon) == std::string_view::npos) {
        std::string_view port = hostport.substr(colon + 1);
        if (!port.empty() && !all_digits(port) && port.find(',') == std::string_view::npos) {
          spans.push_back({start + colon + 1, port.size()});
        }
      }
    }
  }
  constexpr std::string_view kKey = "password=";
  for (std::size_t pos = 0; (pos = url.find(kKey, pos)) != std::string_view::npos;
       pos += kKey.size()) {
    if (pos > 0 && url[pos - 1] != '?' && url[pos - 1] != '&' &&
        std::isspace(static_cast<unsigned char>(url[pos - 1])) == 0) {
      continue;
    }
    std::size_t value = pos + kKey.size();
    std::size_t value_end = value;
    while (value_end < url.size() && url[value_end] != '&' &&
           std::isspace(static_cast<unsigned char>(url[value_end])) == 0) {
      ++value_end;
    }
    if (value_end > value) spans.push_back({value, value_end - value});
  }
  return spans;
}

}  // namespace

std::string redact_url(std::string_view url) {
  std::vector<Span> spans = secret_spans(url);
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin > b.begin; });
  std::string out(url);
  std::size_t limit = out.size();  // spans never overlap, but stay safe if they did
  for (const Span& s : spans) {
    if (s.begin + s.size > limit) continue;
    out.replace(s.begin, s.size, kRedacted);
    limit = s.begin;
  }
  return out;
}

bool have_postgres() {
#ifdef CTRUST_WITH_POSTGRES
  return true;
#else
  return false;
#endif
}

Result<std::unique_ptr<Store>> open_store(const std::string& url, const StoreOptions& options) {
  std::string_view u = url;
  if (u.starts_with(kSqlitePrefix)) {
    std::string_view path = u.substr(kSqlitePrefix.size());
    // "sqlite:///abs/path" is accepted as well as "sqlite:/abs/path".
    if (path.starts_with("//")) path.remove_prefix(2);
    if (path.empty() || (u.starts_with("sqlite://") && !path.starts_with('/'))) {
      return Error(Errc::kInvalidArgument,
                   "store URL \"" + printable(url, 256) + "\": expected sqlite:/path/to/file.db");
    }
    CTRUST_ASSIGN_OR_RETURN(auto db, detail::open_sqlite(std::string(path)));
    return detail::make_sql_store(std::move(db));
  }
  if (u.starts_with("postgresql://") || u.starts_with("postgres://")) {
#ifdef CTRUST_WITH_POSTGRES
    if (options.pool_size == 0) {
      return Error(Errc::kInvalidArgument,
                   "postgresql: the connection pool size must be at least 1");
    }
    CTRUST_ASSIGN_OR_RETURN(auto db, detail::open_postgres(url, options.pool_size));
    return detail::make_sql_store(std::move(db));
#else
    (void)options;
    return Error(Errc::kUnsupported,
                 "postgresql: this build has no PostgreSQL support (CTRUST_WITH_POSTGRES=OFF); "
                 "use a sqlite: store URL or rebuild with it");
#endif
  }
  return Error(Errc::kInvalidArgument, "store URL \"" + printable(redact_url(url), 256) +
                                           "\": expected sqlite:/path/to/file.db or "
                                           "postgresql://user@host:port/database");
}

namespace detail {

std::vector<std::string> url_secrets(std::string_view url) {
  std::vector<std::string> out;
  auto add = [&out](std::string_view s) {
    if (s.empty()) return;
    out.emplace_back(s);
    std::string decoded = percent_decode(s);
    if (decoded != s && !decoded.empty()) out.push_back(std::move(decoded));
  };
  for (const Span& s : secret_spans(url)) {
    std::string_view secret = url.substr(s.begin, s.size);
    add(secret);
    // libpq ends the user info at the first '@': what it takes for the password then.
    if (auto at = secret.find('@'); at != std::string_view::npos) add(secret.substr(0, at));
  }
  // Longest first, so that a secret containing another is replaced whole.
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

std::string scrub(std::string message, std::span<const std::string> secrets) {
  for (const std::string& secret : secrets) {
    if (secret.empty()) continue;
    for (std::size_t pos = 0; (pos = message.find(secret, pos)) != std::string::npos;) {
      message.replace(pos, secret.size(), kRedacted);
      pos += kRedacted.size();
    }
  }
  return message;
}

}  // namespace detail
}  // namespace ctrust::store
