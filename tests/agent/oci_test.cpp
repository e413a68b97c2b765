#include "agent/oci.h"
#include "agent/discovery.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace ctrust::agent {
namespace {

std::string data(const std::string& name) {
  std::ifstream in(std::string(CTRUST_TEST_DATA_DIR) + "/oci/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(OciState, ParsesARuntimeState) {
  auto state = parse_oci_state(data("state.json"));
  ASSERT_TRUE(state) << state.error().message();
  EXPECT_EQ(state->id, "busybox-1");
  EXPECT_EQ(state->status, "creating");
  EXPECT_EQ(state->pid, 4422);
  EXPECT_EQ(state->bundle, "/run/containers/busybox-1");
  auto settings = settings_from_annotations(state->annotations);
  ASSERT_TRUE(settings);
  EXPECT_EQ(settings->mode, policy::Mode::kEnforce);
  EXPECT_EQ(settings->policy->rfind("sha256:", 0), 0U);
}

TEST(OciState, RejectsMalformedStatesWithTheMemberNamed) {
  struct Case {
    const char* json;
    const char* says;
  };
  const Case cases[] = {
      {R"({"id":"a","status":"creating","pid":1,"bundle":"/b"})", "ociVersion"},
      {R"({"ociVersion":"1","status":"creating","pid":1,"bundle":"/b"})", "\"id\""},
      {R"({"ociVersion":"1","id":"","status":"creating","pid":1,"bundle":"/b"})", ".id"},
      {R"({"ociVersion":"1","id":"a","status":"paused","pid":1,"bundle":"/b"})", ".status"},
      {R"({"ociVersion":"1","id":"a","status":"creating","bundle":"/b"})", "pid"},
      {R"({"ociVersion":"1","id":"a","status":"creating","pid":-1,"bundle":"/b"})", ".pid"},
      {R"({"ociVersion":"1","id":"a","status":"creating","pid":"1","bundle":"/b"})", ".pid"},
      {R"({"ociVersion":"1","id":"a","status":"creating","pid":1,"bundle":"b"})", ".bundle"},
      {R"({"ociVersion":"1","id":"a","id":"b","status":"creating","pid":1,"bundle":"/b"})",
       "duplicate"},
      {R"({"ociVersion":"1","id":"a","status":"creating","pid":1,"bundle":"/b",
          "annotations":{"x":1}})",
       "annotations"},
      {R"({"ociVersion":"1","id":"a\u0000b","status":"creating","pid":1,"bundle":"/b"})", "NUL"},
      {R"([1,2])", "object"},
      {R"({"ociVersion":)", "OCI state"},
  };
  for (const auto& c : cases) {
    auto state = parse_oci_state(c.json);
    ASSERT_FALSE(state) << c.json;
    EXPECT_NE(state.error().message().find(c.says), std::string::npos)
        << c.json << " -> " << state.error().message();
  }
  // A stopped container has no pid.
  EXPECT_TRUE(parse_oci_state(R"({"ociVersion":"1","id":"a","status":"stopped","bundle":"/b"})"));
  // Nesting and size limits.
  std::string deep = R"({"ociVersion":"1","id":"a","status":"stopped","bundle":"/b","x":)" +
                     std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_FALSE(parse_oci_state(deep));
  EXPECT_FALSE(parse_oci_state(std::string(kMaxOciDocument + 1, ' ')));
}

TEST(OciConfig, ParsesWhatCtrustNeeds) {
  auto config = parse_oci_config(data("config.json"));
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->root_path, "rootfs");
  EXPECT_TRUE(config->root_readonly);
  ASSERT_EQ(config->mounts.size(), 4U);
  EXPECT_EQ(config->mounts[2].destination, "/dev/shm");
  EXPECT_EQ(config->mounts[2].options.at(1), "noexec");
  EXPECT_EQ(config->mounts[3].type, "bind");
  EXPECT_EQ(config->mounts[3].source, "/srv/data");
  ASSERT_EQ(config->namespaces.size(), 6U);
  EXPECT_EQ(config->namespaces[5].type, "network");
  EXPECT_EQ(config->namespaces[5].path, "/var/run/netns/ns1");
  EXPECT_EQ(config->cgroups_path, "/ctrust/busybox-1");
  EXPECT_EQ(settings_from_annotations(config->annotations)->mode, policy::Mode::kAudit);
}

TEST(OciConfig, RejectsMalformedConfigs) {
  for (const char* bad : {
           R"({})",
           R"({"root":{"path":""}})",
           R"({"root":"rootfs"})",
           R"({"root":{"path":"r","readonly":"yes"}})",
           R"({"root":{"path":"r"},"mounts":{}})",
           R"({"root":{"path":"r"},"mounts":[{"destination":"proc"}]})",
           R"({"root":{"path":"r"},"mounts":[{"destination":"/p","options":[1]}]})",
           R"({"root":{"path":"r"},"linux":{"namespaces":[{"type":"bogus"}]}})",
           R"({"root":{"path":"r"},"linux":{"namespaces":[{"type":"pid","path":"rel"}]}})",
           R"({"root":{"path":"r"},"linux":[]})",
           R"({"root":{"path":"r"},"linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}})",
       }) {
    EXPECT_FALSE(parse_oci_config(bad)) << bad;
  }
}

TEST(Settings, AnInvalidModeIsAnErrorNeverAWeakerMode) {
  auto bad_mode = settings_from_annotations({{"io.ctrust.mode", "ENFORCE"}});
  ASSERT_FALSE(bad_mode);
  EXPECT_NE(bad_mode.error().message().find("io.ctrust.mode"), std::string::npos);
  EXPECT_FALSE(settings_from_annotations({{"io.ctrust.policy", ""}}));
  auto none = settings_from_annotations({{"other", "x"}});
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->mode);
  EXPECT_FALSE(none->policy);
  auto measure = settings_from_annotations({{"io.ctrust.mode", "measure"}});
  ASSERT_TRUE(measure);
  EXPECT_EQ(measure->mode, policy::Mode::kMeasure);
}

TEST(RuntimeState, RuncsStateJsonAndCrunsStatusGiveThePidAndBundle) {
  auto runc = parse_runtime_state(
      "c1", "state.json",
      R"({"id":"c1","init_process_pid":4242,"config":{"labels":["a=b","bundle=/srv/b"]}})");
  ASSERT_TRUE(runc) << runc.error().message();
  EXPECT_EQ(runc->id, "c1");
  EXPECT_EQ(runc->pid, 4242);
  EXPECT_EQ(runc->bundle, "/srv/b");
  EXPECT_FALSE(runc->start_time);
  auto crun = parse_runtime_state("c2", "status", R"({"pid":77,"bundle":"/srv/c"})");
  ASSERT_TRUE(crun) << crun.error().message();
  EXPECT_EQ(crun->pid, 77);
  EXPECT_EQ(crun->bundle, "/srv/c");
  auto started = parse_runtime_state(
      "c1", "state.json",
      R"({"init_process_pid":9,"init_process_start":123456,"config":{"labels":["bundle=/b"]}})");
  ASSERT_TRUE(started);
  EXPECT_EQ(started->start_time, 123456U);
  auto crun_started =
      parse_runtime_state("c2", "status", R"({"pid":9,"process-start-time":77,"bundle":"/b"})");
  ASSERT_TRUE(crun_started);
  EXPECT_EQ(crun_started->start_time, 77U);
  EXPECT_FALSE(parse_runtime_state(
      "c1", "state.json",
      R"({"init_process_pid":9,"init_process_start":"x","config":{"labels":["bundle=/b"]}})"));
  EXPECT_FALSE(parse_runtime_state(
      "c1", "state.json",
      R"({"init_process_pid":9,"init_process_start":-1,"config":{"labels":["bundle=/b"]}})"));
}

TEST(RuntimeState, TheStartTimeIsField22AfterTheCommandName) {
  // A command name with spaces and parentheses cannot shift the fields.
  std::string stat =
      "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 "
      "1000 200 18446744073709551615";
  EXPECT_EQ(parse_proc_stat_start_time(stat), 987654U);
  EXPECT_FALSE(parse_proc_stat_start_time("42 (a) S 1 2"));
  EXPECT_FALSE(parse_proc_stat_start_time("no paren"));
  EXPECT_FALSE(parse_proc_stat_start_time(
      "42 (a) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98x 1000"));
  // The agent's own, as the kernel writes it.
  std::ifstream self("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(parse_proc_stat_start_time(text));
}

TEST(RuntimeState, WhatDoesNotNameAProcessAndAnAbsoluteBundleIsRefused) {
  for (const char* bad : {
           R"([])", R"({"init_process_pid":0,"config":{"labels":["bundle=/b"]}})",
           R"({"init_process_pid":-3,"config":{"labels":["bundle=/b"]}})",
           R"({"init_process_pid":4294967297,"config":{"labels":["bundle=/b"]}})",
           R"({"init_process_pid":"12","config":{"labels":["bundle=/b"]}})",
           R"({"init_process_pid":12,"config":{"labels":["bundle=rel"]}})",
           R"({"init_process_pid":12,"config":{"labels":[1]}})", R"({"init_process_pid":12})",
           R"({"pid":12,"bundle":"/b"})",  // crun's key in runc's file
       }) {
    EXPECT_FALSE(parse_runtime_state("x", "state.json", bad)) << bad;
  }
  EXPECT_FALSE(parse_runtime_state("x", "status", R"({"pid":12})"));
  EXPECT_FALSE(parse_runtime_state("x", "status", "not json"));
}

}  // namespace
}  // namespace ctrust::agent
