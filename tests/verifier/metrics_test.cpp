#include "verifier/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace ctrust::verifier {
namespace {

template <typename T>
T* must(Result<T*> r) {
  if (!r) {
    ADD_FAILURE() << r.error().message();
    std::abort();
  }
  return *r;
}

TEST(Metrics, RendersGoldenText) {
  Registry r;
  must(r.counter("ctrust_attestations_total", "Attestations by result.", {{"result", "affirming"}}))
      ->inc(3);
  must(r.counter("ctrust_attestations_total", "Attestations by result.",
                 {{"result", "contraindicated"}}))
      ->inc();
  must(r.gauge("ctrust_agents", "Registered agents."))->set(5);
  Histogram* h = must(r.histogram("ctrust_attestation_seconds", "Attestation latency.",
                                  std::array{0.25, 0.5, 1.0}));
  for (double v : {0.125, 0.25, 0.5, 2.0}) h->observe(v);
  EXPECT_EQ(r.render(),
            "# HELP ctrust_agents Registered agents.\n"
            "# TYPE ctrust_agents gauge\n"
            "ctrust_agents 5\n"
            "# HELP ctrust_attestation_seconds Attestation latency.\n"
            "# TYPE ctrust_attestation_seconds histogram\n"
            "ctrust_attestation_seconds_bucket{le=\"0.25\"} 2\n"
            "ctrust_attestation_seconds_bucket{le=\"0.5\"} 3\n"
            "ctrust_attestation_seconds_bucket{le=\"1\"} 3\n"
            "ctrust_attestation_seconds_bucket{le=\"+Inf\"} 4\n"
            "ctrust_attestation_seconds_sum 2.875\n"
            "ctrust_attestation_seconds_count 4\n"
            "# HELP ctrust_attestations_total Attestations by result.\n"
            "# TYPE ctrust_attestations_total counter\n"
            "ctrust_attestations_total{result=\"affirming\"} 3\n"
            "ctrust_attestations_total{result=\"contraindicated\"} 1\n");
}

TEST(Metrics, EmptyRegistryRendersNothing) { EXPECT_EQ(Registry().render(), ""); }

TEST(Metrics, SameSeriesIsSameObjectWhateverTheLabelOrder) {
  Registry r;
  Counter* a = must(r.counter("x_total", "h", {{"a", "1"}, {"b", "2"}}));
  Counter* b = must(r.counter("x_total", "h", {{"b", "2"}, {"a", "1"}}));
  EXPECT_EQ(a, b);
  a->inc();
  EXPECT_NE(r.render().find("x_total{a=\"1\",b=\"2\"} 1\n"), std::string::npos);
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry r;
  must(r.gauge("g", "line one\nback\\slash \"quotes\" stay",
               {{"path", "C:\\dir\n\"x\""}, {"id", "ok"}}))
      ->set(-1.5);
  EXPECT_EQ(r.render(),
            "# HELP g line one\\nback\\\\slash \"quotes\" stay\n"
            "# TYPE g gauge\n"
            "g{id=\"ok\",path=\"C:\\\\dir\\n\\\"x\\\"\"} -1.5\n");
}

TEST(Metrics, FormatsSpecialAndSmallValues) {
  Registry r;
  must(r.gauge("a", "h"))->set(std::numeric_limits<double>::infinity());
  must(r.gauge("b", "h"))->set(-std::numeric_limits<double>::infinity());
  must(r.gauge("c", "h"))->set(std::nan(""));
  must(r.gauge("d", "h"))->set(1e-5);
  Gauge* e = must(r.gauge("e", "h"));
  e->inc();
  e->inc();
  e->dec();
  e->add(0.5);
  std::string text = r.render();
  EXPECT_NE(text.find("\na +Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nb -Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nc NaN\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nd 1e-05\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ne 1.5\n"), std::string::npos) << text;
}

TEST(Metrics, RejectsBadNamesAndConflicts) {
  Registry r;
  EXPECT_FALSE(r.counter("", "h").ok());
  EXPECT_FALSE(r.counter("1abc", "h").ok());
  EXPECT_FALSE(r.counter("a-b", "h").ok());
  EXPECT_TRUE(r.counter("ns:sub_total", "h").ok());
  EXPECT_FALSE(r.counter("y_total", "h", {{"bad-label", "v"}}).ok());
  EXPECT_FALSE(r.counter("y_total", "h", {{"__reserved", "v"}}).ok());
  EXPECT_FALSE(r.counter("y_total", "h", {{"a", "1"}, {"a", "2"}}).ok());
  ASSERT_TRUE(r.counter("z_total", "h", {{"a", "1"}}).ok());
  EXPECT_FALSE(r.gauge("z_total", "h").ok());                           // other type
  EXPECT_FALSE(r.counter("z_total", "other help", {{"a", "1"}}).ok());  // other help
  EXPECT_FALSE(r.counter("z_total", "h", {{"b", "1"}}).ok());           // other label names
  EXPECT_FALSE(r.histogram("h", "h", std::array{1.0}, {{"le", "1"}}).ok());
  EXPECT_FALSE(r.histogram("h", "h", std::array{2.0, 1.0}).ok());
  EXPECT_FALSE(r.histogram("h", "h", std::array{1.0, 1.0}).ok());
  EXPECT_FALSE(r.histogram("h", "h", std::array{std::nan(""), 1.0}).ok());
  ASSERT_TRUE(r.histogram("h", "h", std::array{1.0, std::numeric_limits<double>::infinity()}).ok());
  EXPECT_TRUE(r.histogram("h", "h", std::array{1.0}).ok());  // +Inf is implicit: same buckets
  EXPECT_FALSE(r.histogram("h", "h", std::array{2.0}).ok());
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  Registry r;
  Histogram* h = must(r.histogram("lat_seconds", "h", kLatencyBucketsSeconds, {{"op", "quote"}}));
  // One observation exactly on each bound, one just above it, and some beyond the last.
  for (double b : kLatencyBucketsSeconds) {
    h->observe(b);
    h->observe(std::nextafter(b, 1e9));
  }
  h->observe(1000);
  h->observe(std::nan(""));  // dropped
  Histogram::Snapshot s = h->snapshot();
  ASSERT_EQ(s.cumulative.size(), kLatencyBucketsSeconds.size() + 1);
  // Bucket i holds its bound's value and the value just above bound i-1.
  for (std::size_t i = 0; i < kLatencyBucketsSeconds.size(); ++i) {
    EXPECT_EQ(s.cumulative[i], 2 * i + 1) << "bucket " << i;
  }
  EXPECT_EQ(s.cumulative.back(), 2 * kLatencyBucketsSeconds.size() + 1);
  EXPECT_EQ(s.count, s.cumulative.back());
  for (std::size_t i = 1; i < s.cumulative.size(); ++i) {
    EXPECT_LE(s.cumulative[i - 1], s.cumulative[i]);
  }
  std::string text = r.render();
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"quote\",le=\"0.01\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"quote\",le=\"60\"} 23\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"quote\",le=\"+Inf\"} 25\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_count{op=\"quote\"} 25\n"), std::string::npos);
}

TEST(Metrics, ConcurrentUpdatesSumExactly) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  Registry r;
  Counter* c = must(r.counter("ops_total", "h"));
  Gauge* g = must(r.gauge("inflight", "h"));
  Histogram* h = must(r.histogram("lat_seconds", "h", std::array{0.5}));
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads also look their series up every time, racing with registration.
      for (int i = 0; i < kPerThread; ++i) {
        Counter* mine = (t % 2 == 0) ? c : *r.counter("ops_total", "h");
        mine->inc();
        g->inc();
        h->observe((i % 2 == 0) ? 0.25 : 1.0);
        if (i % 10000 == 0) (void)r.render();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(c->value(), std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(g->value(), double{kThreads} * kPerThread);
  Histogram::Snapshot s = h->snapshot();
  EXPECT_EQ(s.count, std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(s.cumulative[0], std::uint64_t{kThreads} * kPerThread / 2);
  EXPECT_EQ(s.sum, 0.25 * kThreads * kPerThread / 2 + 1.0 * kThreads * kPerThread / 2);
}

// Cross-check with an independent parser (the Python Prometheus client) when it is there;
// in CI (CI=true) its absence is a failure.
std::string python_with(const std::string& module) {
  for (const char* py : {"python3", "/usr/bin/python3"}) {
    std::string cmd = std::string(py) + " -c 'import " + module + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

TEST(Metrics, PythonPrometheusClientParsesOutput) {
  std::string py = python_with("prometheus_client.parser");
  if (py.empty()) {
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") {
      FAIL() << "python3-prometheus-client is required in CI";
    }
    GTEST_SKIP() << "python3-prometheus-client is not installed "
                    "(apt-get install python3-prometheus-client)";
  }
  Registry r;
  must(r.counter("req_total", "Requests \\ with \"odd\"\nhelp.", {{"path", "/a\"b\\c\nd"}}))
      ->inc(7);
  Histogram* h = must(r.histogram("lat_seconds", "Latency.", kLatencyBucketsSeconds));
  h->observe(0.3);
  h->observe(3);
  must(r.gauge("temp", "T."))->set(-2.5);
  auto dir =
      std::filesystem::temp_directory_path() / ("ctrust-metrics-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string file = (dir / "metrics.txt").string();
  std::ofstream(file) << r.render();
  std::string script = (dir / "check.py").string();
  std::ofstream(script) << R"(import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
req = fams["req"]
assert req.type == "counter", req.type
assert req.documentation == 'Requests \\ with "odd"\nhelp.', repr(req.documentation)
(s,) = req.samples
assert s.labels == {"path": '/a"b\\c\nd'}, s.labels
assert s.value == 7
lat = {(x.name, x.labels.get("le")): x.value for x in fams["lat_seconds"].samples}
assert lat[("lat_seconds_bucket", "0.25")] == 0
assert lat[("lat_seconds_bucket", "0.5")] == 1
assert lat[("lat_seconds_bucket", "5")] == 2
assert lat[("lat_seconds_bucket", "+Inf")] == 2
assert lat[("lat_seconds_count", None)] == 2
assert abs(lat[("lat_seconds_sum", None)] - 3.3) < 1e-9
assert fams["temp"].samples[0].value == -2.5
print("ok")
)";
  std::string cmd = py + " " + script + " " + file + " 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  std::filesystem::remove_all(dir);
  EXPECT_EQ(out, "ok\n");
}

}  // namespace
}  // namespace ctrust::verifier
