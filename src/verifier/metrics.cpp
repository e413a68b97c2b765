#include "verifier/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

namespace ctrust::verifier {
namespace {

bool is_name_char(char c, bool first, bool allow_colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (allow_colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool is_valid_name(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!is_name_char(name[i], i == 0, allow_colon)) return false;
  }
  return true;
}

// Shortest round-trip decimal form; Prometheus spells the specials +Inf, -Inf, NaN.
std::string format_double(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

void append_escaped_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

std::string escape_help(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// name{labels} or name{labels,extra} or name.
void append_series(std::string& out, std::string_view name, std::string_view suffix,
                   const std::string& labels, std::string_view extra) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra.empty()) {
    out += '{';
    out += labels;
    if (!labels.empty() && !extra.empty()) out += ',';
    out += extra;
    out += '}';
  }
  out += ' ';
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::observe(double v) noexcept {
  if (std::isnan(v)) return;
  // Bounds are few (a dozen): a linear scan beats a binary search's branches here.
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

Result<std::pair<Registry::Family*, std::string>> Registry::family_for(
    std::string_view name, std::string_view help, Type type, const Labels& labels,
    std::span<const double> bounds) {
  if (!is_valid_name(name, true)) {
    return Error(Errc::kInvalidArgument,
                 "bad metric name \"" + std::string(name) + "\": use [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> label_names;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const std::string& label = sorted[i].first;
    if (!is_valid_name(label, false) || label.starts_with("__")) {
      return Error(Errc::kInvalidArgument, "metric " + std::string(name) + ": bad label name \"" +
                                               label + "\": use [a-zA-Z_][a-zA-Z0-9_]*, not __*");
    }
    if (type == Type::kHistogram && label == "le") {
      return Error(Errc::kInvalidArgument,
                   "metric " + std::string(name) + ": \"le\" is reserved for histogram buckets");
    }
    if (i > 0 && sorted[i - 1].first == label) {
      return Error(Errc::kInvalidArgument,
                   "metric " + std::string(name) + ": label \"" + label + "\" given twice");
    }
    label_names.push_back(label);
  }
  std::vector<double> bound_list;
  if (type == Type::kHistogram) {
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      const double b = bounds[i];
      if (std::isinf(b) && b > 0 && i + 1 == bounds.size()) break;  // +Inf is implicit
      if (!std::isfinite(b) || (!bound_list.empty() && b <= bound_list.back())) {
        return Error(Errc::kInvalidArgument,
                     "histogram " + std::string(name) +
                         ": bucket bounds must be finite and strictly increasing");
      }
      bound_list.push_back(b);
    }
  }

  auto it = families_.find(name);
  if (it == families_.end()) {
    Family f{type, std::string(help), label_names, bound_list, {}, {}, {}};
    it = families_.emplace(std::string(name), std::move(f)).first;
  } else {
    const Family& f = it->second;
    if (f.type != type) {
      return Error(Errc::kInvalidArgument,
                   "metric " + std::string(name) + " is already registered with another type");
    }
    if (f.help != help) {
      return Error(Errc::kInvalidArgument,
                   "metric " + std::string(name) + " is already registered with other help text");
    }
    if (f.label_names != label_names) {
      return Error(Errc::kInvalidArgument,
                   "metric " + std::string(name) + " is already registered with other label names");
    }
    if (f.bounds != bound_list) {
      return Error(Errc::kInvalidArgument,
                   "histogram " + std::string(name) + " is already registered with other buckets");
    }
  }

  std::string key;
  for (const auto& [label, value] : sorted) {
    if (!key.empty()) key += ',';
    key += label;
    key += "=\"";
    append_escaped_label_value(key, value);
    key += '"';
  }
  return std::make_pair(&it->second, std::move(key));
}

Result<Counter*> Registry::counter(std::string_view name, std::string_view help,
                                   const Labels& labels) {
  std::lock_guard lock(mutex_);
  CTRUST_ASSIGN_OR_RETURN(auto found, family_for(name, help, Type::kCounter, labels, {}));
  auto& slot = found.first->counters[found.second];
  if (!slot) slot = std::make_unique<Counter>();
  return slot.get();
}

Result<Gauge*> Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  CTRUST_ASSIGN_OR_RETURN(auto found, family_for(name, help, Type::kGauge, labels, {}));
  auto& slot = found.first->gauges[found.second];
  if (!slot) slot = std::make_unique<Gauge>();
  return slot.get();
}

Result<Histogram*> Registry::histogram(std::string_view name, std::string_view help,
                                       std::span<const double> bounds, const Labels& labels) {
  std::lock_guard lock(mutex_);
  CTRUST_ASSIGN_OR_RETURN(auto found, family_for(name, help, Type::kHistogram, labels, bounds));
  auto& slot = found.first->histograms[found.second];
  if (!slot) slot.reset(new Histogram(found.first->bounds));
  return slot.get();
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += escape_help(f.help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    switch (f.type) {
      case Type::kCounter:
        out += "counter";
        break;
      case Type::kGauge:
        out += "gauge";
        break;
      case Type::kHistogram:
        out += "histogram";
        break;
    }
    out += '\n';
    for (const auto& [labels, c] : f.counters) {
      append_series(out, name, "", labels, "");
      out += std::to_string(c->value());
      out += '\n';
    }
    for (const auto& [labels, g] : f.gauges) {
      append_series(out, name, "", labels, "");
      out += format_double(g->value());
      out += '\n';
    }
    for (const auto& [labels, h] : f.histograms) {
      Histogram::Snapshot s = h->snapshot();
      for (std::size_t i = 0; i <= s.bounds.size(); ++i) {
        std::string le = "le=\"";
        le += i < s.bounds.size() ? format_double(s.bounds[i]) : "+Inf";
        le += '"';
        append_series(out, name, "_bucket", labels, le);
        out += std::to_string(s.cumulative[i]);
        out += '\n';
      }
      append_series(out, name, "_sum", labels, "");
      out += format_double(s.sum);
      out += '\n';
      append_series(out, name, "_count", labels, "");
      out += std::to_string(s.count);
      out += '\n';
    }
  }
  return out;
}

}  // namespace ctrust::verifier
