// A small Prometheus metrics registry for the verifier: counters, gauges and fixed-bucket
// histograms, with optional labels, rendered in the text exposition format 0.0.4 for a
// /metrics endpoint.
//
// Ownership: the Registry owns every metric; the pointers it hands out stay valid for its
// lifetime, so callers look a series up once (at start-up, or when a new label value first
// appears) and then only touch atomics.
//
// Threading: everything is thread safe. Updates (Counter::inc, Gauge::set/add,
// Histogram::observe) are lock-free atomic operations with relaxed ordering, because the
// attestation loop calls them from many threads; looking up or creating a series and
// render() take the registry's mutex (they never block updates). A render() that races
// with updates sees each series at some recent value; a histogram's buckets, _count and
// +Inf bucket always agree with each other (the count is the sum of the buckets), though
// _sum may include an observation the buckets do not yet show.
//
// Format (https://prometheus.io/docs/instrumenting/exposition_formats/): per family
// "# HELP" (\ and newline escaped) and "# TYPE" lines, then one line per series, families
// sorted by name and series by label values; label values escape \, " and newline;
// histograms give cumulative name_bucket{...,le="B"} lines ending with le="+Inf", then
// name_sum and name_count. Numbers are written in the shortest form that reads back exactly
// (1, 0.25, 1e-05, +Inf, -Inf, NaN).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace ctrust::verifier {

// Label name -> value; order does not matter (series are identified by the sorted set).
using Labels = std::vector<std::pair<std::string, std::string>>;

// Upper bounds (seconds) for attestation latency: a round trip, TPM quotes (100 ms to a few
// seconds on real TPMs) and log appraisal.
inline constexpr std::array<double, 12> kLatencyBucketsSeconds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                                  1,    2.5,   5,    10,  30,   60};

inline constexpr std::string_view kExpositionContentType =
    "text/plain; version=0.0.4; charset=utf-8";

class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  void inc() noexcept { add(1); }
  void dec() noexcept { add(-1); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `v` in the first bucket whose upper bound is >= v (or +Inf) and adds it to the
  // sum. NaN observations are dropped (they would poison _sum and fit no bucket).
  void observe(double v) noexcept;

  struct Snapshot {
    std::vector<double> bounds;             // finite upper bounds, increasing
    std::vector<std::uint64_t> cumulative;  // bounds.size() + 1 entries; the last is +Inf
    double sum = 0;
    std::uint64_t count = 0;  // == cumulative.back()
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  friend class Registry;
  explicit Histogram(std::vector<double> bounds);

  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The series of family `name` with `labels`, created on first use; the same pointer for
  // the same name and label set. Errc::kInvalidArgument for a bad metric or label name
  // (Prometheus rules; "le" is reserved for histograms, names starting "__" are reserved),
  // a duplicate label name, a name already used with another type or help text, a label
  // set whose names differ from the family's first series, or histogram bounds that are
  // not finite and strictly increasing (+Inf is implicit) or differ from the family's.
  Result<Counter*> counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Result<Gauge*> gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Result<Histogram*> histogram(std::string_view name, std::string_view help,
                               std::span<const double> bounds, const Labels& labels = {});

  // Every family in the text exposition format 0.0.4 (see the top of this file).
  std::string render() const;

 private:
  enum class Type : std::uint8_t { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::vector<std::string> label_names;  // sorted
    std::vector<double> bounds;            // histograms
    // Keyed by the rendered, escaped label pairs (a="x",b="y"), which sort by value.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  // The family for `name` (created if new) and the series key for `labels`, after checks.
  Result<std::pair<Family*, std::string>> family_for(std::string_view name, std::string_view help,
                                                     Type type, const Labels& labels,
                                                     std::span<const double> bounds);

  mutable std::mutex mutex_;
  std::map<std::string, Family, std::less<>> families_;
};

}  // namespace ctrust::verifier
