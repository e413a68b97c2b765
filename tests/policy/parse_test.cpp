// Parsing and serialising policies: round trips, and every rule the parser enforces on
// untrusted documents, each with a check that the message names what is wrong.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "policy/policy.h"
#include "policy/test_util.h"
#include "util/json.h"

namespace ctrust::policy {
namespace {

using nlohmann::ordered_json;
using testing::digest_of;
using testing::digest_text;

// A valid unsigned document, as a user would write it by hand.
ordered_json base_doc() {
  ordered_json d = ordered_json::object();
  d["ctrust_policy"] = 1;
  d["name"] = "app";
  d["issuer"] = "team";
  d["serial"] = 3;
  d["not_before"] = "2026-01-01T00:00:00Z";
  d["not_after"] = "2027-01-01T00:00:00Z";
  d["mode"] = "enforce";
  d["images"] = ordered_json::array();
  d["exclude"] = ordered_json::array({"/tmp/"});
  d["allow"] =
      ordered_json::array({{{"digest", digest_text(digest_of("a"))}, {"paths", {"/bin/a"}}},
                           {{"digest", digest_text(digest_of("b"))}}});
  return d;
}

std::string doc_with(const std::function<void(ordered_json&)>& edit) {
  ordered_json d = base_doc();
  edit(d);
  return d.dump();
}

// The document must be rejected with a message containing every one of `parts`.
void expect_rejected(const std::string& text, std::initializer_list<std::string> parts) {
  auto p = parse_policy(text);
  ASSERT_FALSE(p.ok()) << "accepted: " << text.substr(0, 300);
  for (const std::string& part : parts) {
    EXPECT_NE(p.error().message().find(part), std::string::npos)
        << "message \"" << p.error().message() << "\" lacks \"" << part << "\"";
  }
}

TEST(PolicyParse, BaseDocumentIsAccepted) {
  auto p = parse_policy(base_doc().dump());
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->name, "app");
  EXPECT_EQ(p->issuer, "team");
  EXPECT_EQ(p->serial, 3u);
  EXPECT_EQ(p->not_before, testing::kJan2026);
  EXPECT_EQ(p->not_after, testing::kJan2027);
  EXPECT_EQ(p->mode, Mode::kEnforce);
  EXPECT_TRUE(p->images.empty());
  ASSERT_EQ(p->allow.size(), 2u);
  EXPECT_EQ(p->excludes, std::vector<std::string>{"/tmp/"});
  EXPECT_FALSE(p->signature.has_value());
  EXPECT_TRUE(p->extensions.empty());
}

TEST(PolicyParse, RoundTripKeepsEveryValue) {
  Policy p = testing::sample_policy();
  std::string text = to_json(p);
  auto again = parse_policy(text);
  ASSERT_TRUE(again.ok()) << again.error().message();
  testing::expect_same_policy(p, *again);
  EXPECT_EQ(to_json(*again), text);
  EXPECT_EQ(signed_bytes(*again), signed_bytes(p));
}

TEST(PolicyParse, RoundTripOfEveryModeAndLimitValues) {
  for (Mode m : {Mode::kOff, Mode::kMeasure, Mode::kAudit, Mode::kEnforce}) {
    Policy p = testing::sample_policy();
    p.mode = m;
    p.serial = UINT64_MAX;
    p.not_before = 0;
    p.not_after = 253402300799;  // 9999-12-31T23:59:59Z
    auto again = parse_policy(to_json(p));
    ASSERT_TRUE(again.ok()) << again.error().message();
    testing::expect_same_policy(p, *again);
  }
}

TEST(PolicyParse, ToJsonIsIndentedAndEndsInNewline) {
  std::string text = to_json(testing::sample_policy());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("\n  \"name\": \"web frontend\""), std::string::npos) << text;
  // Documentation order: the header first, the allow list after the header fields.
  EXPECT_LT(text.find("\"ctrust_policy\""), text.find("\"name\""));
  EXPECT_LT(text.find("\"mode\""), text.find("\"allow\""));
}

TEST(PolicyParse, ModeNamesRoundTrip) {
  for (Mode m : {Mode::kOff, Mode::kMeasure, Mode::kAudit, Mode::kEnforce}) {
    EXPECT_EQ(parse_mode(mode_name(m)), m);
  }
  EXPECT_FALSE(parse_mode("Enforce").has_value());
  EXPECT_FALSE(parse_mode("").has_value());
}

TEST(PolicyParse, MalformedJson) {
  expect_rejected("", {"malformed JSON"});
  expect_rejected("{", {"malformed JSON"});
  expect_rejected(base_doc().dump() + "x", {"malformed JSON"});
  expect_rejected(R"({"ctrust_policy": 1,})", {"malformed JSON"});
  expect_rejected("{'ctrust_policy': 1}", {"malformed JSON"});
  // Comments are not JSON.
  expect_rejected("/* c */" + base_doc().dump(), {"malformed JSON"});
  expect_rejected("[]", {"a policy is a JSON object"});
  expect_rejected("1", {"a policy is a JSON object"});
}

TEST(PolicyParse, DuplicateKeysAtTheTopLevel) {
  std::string text = base_doc().dump();
  // A second "serial" after the first: nlohmann alone would keep the last one.
  text.insert(text.size() - 1, R"(,"serial":4)");
  expect_rejected(text, {"duplicate key", "serial"});
}

TEST(PolicyParse, DuplicateKeysNested) {
  std::string digest = digest_text(digest_of("a"));
  std::string text = doc_with([](ordered_json& d) { d["allow"] = "@@"; });
  auto at = text.find("\"@@\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 4, R"([{"digest":")" + digest + R"(","paths":["/a"],"paths":["/b"]}])");
  expect_rejected(text, {"duplicate key", "paths"});
  // Duplicates inside an extension value, too.
  std::string ext = base_doc().dump();
  ext.insert(ext.size() - 1, R"(,"x-meta":{"k":1,"k":2})");
  expect_rejected(ext, {"duplicate key", "\"k\""});
  // Keys are compared after unescaping.
  std::string escaped = base_doc().dump();
  escaped.insert(escaped.size() - 1, R"(,"n\u0061me":"other")");
  expect_rejected(escaped, {"duplicate key", "name"});
  // The same key in sibling objects is fine.
  std::string siblings = base_doc().dump();
  siblings.insert(siblings.size() - 1, R"(,"x-meta":[{"k":1},{"k":2}])");
  EXPECT_TRUE(parse_policy(siblings).ok());
}

TEST(PolicyParse, DeepNestingIsRejectedWithoutCrashing) {
  for (std::size_t n : {17u, 100u, 10000u, 1000000u}) {
    std::string text(n, '[');
    auto p = parse_policy(text);
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.error().message().find("nesting deeper than 16"), std::string::npos)
        << p.error().message();
    text = std::string(n, '[') + std::string(n, ']');
    EXPECT_FALSE(parse_policy(text).ok());
  }
  // Exactly kMaxJsonDepth levels (the policy object plus 15 arrays) is allowed; one more is not.
  auto nested = [](std::size_t arrays) {
    std::string text = base_doc().dump();
    text.insert(text.size() - 1,
                ",\"x-deep\":" + std::string(arrays, '[') + std::string(arrays, ']'));
    return text;
  };
  auto ok = parse_policy(nested(kMaxJsonDepth - 1));
  EXPECT_TRUE(ok.ok()) << ok.error().message();
  expect_rejected(nested(kMaxJsonDepth), {"nesting deeper than"});
  // The same limit for objects.
  std::string objs = base_doc().dump();
  std::string inner = "1";
  for (std::size_t i = 0; i < kMaxJsonDepth; ++i) inner = "{\"a\":" + inner + "}";
  objs.insert(objs.size() - 1, ",\"x-deep\":" + inner);
  expect_rejected(objs, {"nesting deeper than"});
}

TEST(PolicyParse, StrictJsonDirectly) {
  auto ok = parse_json_strict(R"({"a":[1,{"b":null}]})", 3);
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ((*ok)["a"][1]["b"], nullptr);
  EXPECT_FALSE(parse_json_strict(R"({"a":[1,{"b":null}]})", 2).ok());
  auto dup = parse_json_strict(R"({"a":1,"a":1})", 3);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message().find("duplicate key \"a\""), std::string::npos);
  EXPECT_EQ(dup.error().code(), Errc::kFormat);
}

TEST(PolicyParse, HugeAndNonIntegerSerials) {
  auto serial = [](const std::string& value) {
    std::string text = doc_with([](ordered_json& d) { d["serial"] = "@@"; });
    text.replace(text.find("\"@@\""), 4, value);
    return text;
  };
  expect_rejected(serial("1e400"), {});
  expect_rejected(serial("18446744073709551616"), {"serial", "integer from 0 to 2^64-1"});
  expect_rejected(serial("-1"), {"serial", "integer from 0 to 2^64-1"});
  expect_rejected(serial("1.5"), {"serial", "integer from 0 to 2^64-1"});
  expect_rejected(serial("1.0"), {"serial", "integer"});
  expect_rejected(serial("1e2"), {"serial", "integer"});
  expect_rejected(serial("\"5\""), {"serial", "integer"});
  expect_rejected(serial("true"), {"serial", "integer"});
  expect_rejected(serial("null"), {"serial", "integer"});
  auto max = parse_policy(serial("18446744073709551615"));
  ASSERT_TRUE(max.ok()) << max.error().message();
  EXPECT_EQ(max->serial, UINT64_MAX);
  auto zero = parse_policy(serial("0"));
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->serial, 0u);
  // The version number follows the same rule.
  std::string v = doc_with([](ordered_json& d) { d["ctrust_policy"] = "@@"; });
  v.replace(v.find("\"@@\""), 4, "1.0");
  expect_rejected(v, {"ctrust_policy", "integer"});
}

TEST(PolicyParse, WrongTypes) {
  expect_rejected(doc_with([](ordered_json& d) { d["name"] = 5; }), {"name", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["issuer"] = nullptr; }),
                  {"issuer", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["mode"] = 1; }), {"mode", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["not_before"] = 1767225600; }),
                  {"not_before", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["images"] = "sha256:00"; }),
                  {"images", "must be an array"});
  expect_rejected(doc_with([](ordered_json& d) { d["images"] = {1}; }),
                  {"images[0]", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"] = ordered_json::object(); }),
                  {"allow", "must be an array"});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][1] = "sha256:00"; }),
                  {"allow[1]", "must be an object"});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["digest"] = 3; }),
                  {"allow[0].digest", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["paths"] = "/bin/a"; }),
                  {"allow[0].paths", "non-empty array"});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["paths"] = {7}; }),
                  {"allow[0].paths[0]", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["exclude"] = "/tmp/"; }),
                  {"exclude", "must be an array"});
  expect_rejected(doc_with([](ordered_json& d) { d["exclude"] = {false}; }),
                  {"exclude[0]", "must be a string"});
  expect_rejected(doc_with([](ordered_json& d) { d["signature"] = "abc"; }),
                  {"signature", "must be an object"});
  expect_rejected(doc_with([](ordered_json& d) { d["mode"] = "strict"; }),
                  {"mode", "unknown mode \"strict\""});
  expect_rejected(doc_with([](ordered_json& d) { d["mode"] = "Enforce"; }), {"unknown mode"});
}

TEST(PolicyParse, MissingMembers) {
  for (const char* key : {"ctrust_policy", "name", "issuer", "serial", "not_before", "not_after",
                          "mode", "images", "allow", "exclude"}) {
    SCOPED_TRACE(key);
    expect_rejected(doc_with([&](ordered_json& d) { d.erase(key); }),
                    {std::string("missing member \"") + key + "\""});
  }
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0].erase("digest"); }),
                  {"allow[0]", "missing member \"digest\""});
}

TEST(PolicyParse, UnknownMembersAreRejected) {
  expect_rejected(doc_with([](ordered_json& d) { d["comment"] = "hi"; }),
                  {"unknown member \"comment\"", "x-"});
  expect_rejected(doc_with([](ordered_json& d) { d["Name"] = "hi"; }), {"unknown member \"Name\""});
  // "x-" alone is not an extension name.
  expect_rejected(doc_with([](ordered_json& d) { d["x-"] = 1; }), {"unknown member \"x-\""});
  // Nested objects have no extension members.
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["comment"] = "hi"; }),
                  {"allow[0]", "unknown member \"comment\""});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["x-note"] = "hi"; }),
                  {"allow[0]", "unknown member \"x-note\""});
}

TEST(PolicyParse, ExtensionMembersAreKept) {
  std::string text = doc_with([](ordered_json& d) {
    d["x-owner"] = "team a";
    d["x-build"] = {{"id", 17}, {"ok", true}};
  });
  auto p = parse_policy(text);
  ASSERT_TRUE(p.ok()) << p.error().message();
  ASSERT_EQ(p->extensions.size(), 2u);
  EXPECT_EQ(p->extensions["x-owner"], "team a");
  EXPECT_EQ(p->extensions["x-build"]["id"], 17);
  // Written back out, and part of the signed bytes.
  std::string again = to_json(*p);
  EXPECT_NE(again.find("\"x-owner\": \"team a\""), std::string::npos) << again;
  EXPECT_NE(signed_bytes(*p).find("\"x-owner\":\"team a\""), std::string::npos);
  Policy changed = *p;
  changed.extensions["x-owner"] = "team b";
  EXPECT_NE(signed_bytes(changed), signed_bytes(*p));
}

TEST(PolicyParse, DigestSpelling) {
  std::string hex = digest_of("a").hex();
  auto with_digest = [](const std::string& text) {
    return doc_with([&](ordered_json& d) { d["allow"][0]["digest"] = text; });
  };
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  expect_rejected(with_digest("sha256:" + upper), {"allow[0].digest", "lower-case hex"});
  expect_rejected(with_digest("SHA256:" + hex), {"allow[0].digest", "unknown digest algorithm"});
  expect_rejected(with_digest("md5:" + hex.substr(0, 32)), {"unknown digest algorithm \"md5\""});
  expect_rejected(with_digest("sha256:" + hex.substr(0, 62)), {"64 hex digits, not 62"});
  expect_rejected(with_digest("sha256:" + hex + "00"), {"64 hex digits, not 66"});
  expect_rejected(with_digest("sha1:" + hex), {"40 hex digits, not 64"});
  expect_rejected(with_digest(hex), {"alg:hex"});
  expect_rejected(with_digest("sha256:" + hex.substr(0, 63) + "g"), {"lower-case hex"});
  expect_rejected(with_digest("sha256: " + hex.substr(1)), {"lower-case hex"});
  for (crypto::HashAlg alg : crypto::kAllHashAlgs) {
    crypto::Digest d = digest_of("a", alg);
    auto p = parse_policy(with_digest(digest_text(d)));
    ASSERT_TRUE(p.ok()) << p.error().message();
    bool found = false;
    for (const Allow& a : p->allow) found = found || a.digest == d;
    EXPECT_TRUE(found) << digest_text(d);
  }
  // Image digests are sha256 only.
  expect_rejected(doc_with([](ordered_json& d) {
                    d["images"] = {digest_text(digest_of("i", crypto::HashAlg::kSha512))};
                  }),
                  {"images[0]", "sha256"});
}

TEST(PolicyParse, Times) {
  auto with_time = [](const char* key, const std::string& t) {
    return doc_with([&](ordered_json& d) { d[key] = t; });
  };
  expect_rejected(with_time("not_before", "2026-01-01T00:00:00+00:00"),
                  {"not_before", "YYYY-MM-DDTHH:MM:SSZ"});
  expect_rejected(with_time("not_before", "2026-01-01T00:00:00z"), {"not_before", "(UTC)"});
  expect_rejected(with_time("not_before", "2026-01-01 00:00:00Z"), {"not_before"});
  expect_rejected(with_time("not_before", "2026-01-01T00:00:00.5Z"), {"not_before"});
  expect_rejected(with_time("not_before", "2026-1-01T00:00:00Z"), {"not_before"});
  expect_rejected(with_time("not_before", ""), {"not_before"});
  expect_rejected(with_time("not_after", "2026-02-30T00:00:00Z"),
                  {"not_after", "not a valid date and time"});
  expect_rejected(with_time("not_after", "2026-13-01T00:00:00Z"), {"not a valid date"});
  expect_rejected(with_time("not_after", "2026-12-01T24:00:00Z"), {"not a valid date"});
  expect_rejected(with_time("not_after", "2026-12-31T23:59:60Z"), {"not a valid date"});
  expect_rejected(with_time("not_after", "2027-02-29T00:00:00Z"), {"not a valid date"});
  EXPECT_TRUE(parse_policy(with_time("not_after", "2028-02-29T00:00:00Z")).ok());
  // The window must not be empty.
  expect_rejected(with_time("not_after", "2026-01-01T00:00:00Z"),
                  {"not_after", "later than not_before"});
  expect_rejected(with_time("not_after", "2025-12-31T23:59:59Z"), {"later than not_before"});
  auto one_second = parse_policy(with_time("not_after", "2026-01-01T00:00:01Z"));
  ASSERT_TRUE(one_second.ok());
  EXPECT_EQ(one_second->not_after - one_second->not_before, 1);
}

TEST(PolicyParse, TimeFunctions) {
  auto t = parse_time("2026-01-01T00:00:00Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, testing::kJan2026);
  EXPECT_EQ(format_time(testing::kJan2027), "2027-01-01T00:00:00Z");
  EXPECT_EQ(format_time(0), "1970-01-01T00:00:00Z");
  for (std::int64_t s : {std::int64_t{0}, testing::kMid2026 + 3723, std::int64_t{951782400}}) {
    auto back = parse_time(format_time(s));
    ASSERT_TRUE(back.ok()) << format_time(s);
    EXPECT_EQ(*back, s);
  }
  EXPECT_FALSE(parse_time("2026-02-29T00:00:00Z").ok());
  EXPECT_FALSE(parse_time("2026-01-01T00:00:00").ok());
}

TEST(PolicyParse, PathsAndExcludes) {
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["paths"] = ordered_json::array(); }),
                  {"allow[0].paths", "non-empty array", "any path"});
  expect_rejected(doc_with([](ordered_json& d) { d["allow"][0]["paths"] = {"bin/a"}; }),
                  {"paths[0]", "must start with '/'"});
  expect_rejected(doc_with([](ordered_json& d) {
                    d["allow"][0]["paths"] = {"/a", ""};
                  }),
                  {"must start with '/'"});
  expect_rejected(doc_with([](ordered_json& d) {
                    d["allow"][0]["paths"] = {"/" + std::string(kMaxPathPatternLen, 'a')};
                  }),
                  {"paths[0]"});
  EXPECT_TRUE(parse_policy(doc_with([](ordered_json& d) {
                d["allow"][0]["paths"] = {"/" + std::string(kMaxPathPatternLen - 1, 'a')};
              })).ok());
  expect_rejected(doc_with([](ordered_json& d) { d["exclude"] = {"/tmp/("}; }),
                  {"exclude[0]", "not a POSIX extended regular expression"});
  expect_rejected(doc_with([](ordered_json& d) { d["exclude"] = {"/a[b"}; }),
                  {"not a POSIX extended regular expression"});
  expect_rejected(doc_with([](ordered_json& d) { d["exclude"] = {"/(a)\\1"}; }),
                  {"exclude[0]", "back-references"});
  expect_rejected(doc_with([](ordered_json& d) {
                    d["exclude"] = {"/ok", "(x*)*\\9"};
                  }),
                  {"back-references"});
  expect_rejected(doc_with([](ordered_json& d) { d["exclude"] = {""}; }), {"exclude"});
  // An escaped backslash followed by a digit is a literal backslash and a digit.
  auto lit = parse_policy(doc_with([](ordered_json& d) { d["exclude"] = {"/a\\\\1"}; }));
  EXPECT_TRUE(lit.ok()) << lit.error().message();
}

TEST(PolicyParse, FormatVersion) {
  auto p = parse_policy(doc_with([](ordered_json& d) { d["ctrust_policy"] = 2; }));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), Errc::kUnsupported);
  EXPECT_NE(p.error().message().find("version 2 is not supported"), std::string::npos)
      << p.error().message();
  expect_rejected(doc_with([](ordered_json& d) { d["ctrust_policy"] = 0; }), {"version 0"});
}

TEST(PolicyParse, InvalidUtf8AndNul) {
  std::string text = doc_with([](ordered_json& d) { d["name"] = "@@"; });
  std::string bad = text;
  bad.replace(bad.find("@@"), 2, "a\xff");
  expect_rejected(bad, {"malformed JSON"});
  bad = text;
  bad.replace(bad.find("@@"), 2, "\xc0\xaf");  // overlong '/'
  expect_rejected(bad, {"malformed JSON"});
  bad = text;
  bad.replace(bad.find("@@"), 2, "\xed\xa0\x80");  // a UTF-16 surrogate
  expect_rejected(bad, {"malformed JSON"});
  bad = text;
  bad.replace(bad.find("@@"), 2, std::string("a\0b", 3));  // a raw NUL
  expect_rejected(bad, {"malformed JSON"});
  bad = text;
  bad.replace(bad.find("@@"), 2, "a\\u0000b");  // an escaped NUL
  expect_rejected(bad, {"name", "NUL"});
  std::string path = doc_with([](ordered_json& d) { d["allow"][0]["paths"] = {"@@"}; });
  path.replace(path.find("@@"), 2, "/a\\u0000b");
  expect_rejected(path, {"allow[0].paths[0]", "NUL"});
  // Valid UTF-8 passes.
  auto ok = parse_policy(doc_with([](ordered_json& d) { d["name"] = "Zürich \u2713"; }));
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->name, "Zürich \u2713");
}

TEST(PolicyParse, NameAndIssuerRules) {
  expect_rejected(doc_with([](ordered_json& d) { d["name"] = ""; }), {"name", "1 to 1024"});
  expect_rejected(doc_with([](ordered_json& d) { d["issuer"] = ""; }), {"issuer"});
  expect_rejected(doc_with([](ordered_json& d) { d["name"] = "a\nb"; }),
                  {"name", "control characters"});
  expect_rejected(doc_with([](ordered_json& d) { d["issuer"] = "a\x1b[31m"; }),
                  {"issuer", "control characters"});
  expect_rejected(doc_with([](ordered_json& d) { d["name"] = std::string(1025, 'n'); }), {"name"});
  EXPECT_TRUE(
      parse_policy(doc_with([](ordered_json& d) { d["name"] = std::string(1024, 'n'); })).ok());
}

TEST(PolicyParse, UnsignedDocumentsAreNormalized) {
  // Unsorted entries, a repeated digest and repeated paths: sorted and merged on parse.
  std::string a = digest_text(digest_of("a"));
  std::string b = digest_text(digest_of("b"));
  std::string s1 = digest_text(digest_of("a", crypto::HashAlg::kSha1));
  auto p = parse_policy(doc_with([&](ordered_json& d) {
    d["allow"] = ordered_json::array({{{"digest", b}, {"paths", {"/z", "/y", "/z"}}},
                                      {{"digest", a}, {"paths", {"/b"}}},
                                      {{"digest", s1}},
                                      {{"digest", a}, {"paths", {"/a"}}}});
    d["exclude"] = {"/tmp/", "/proc/", "/tmp/"};
  }));
  ASSERT_TRUE(p.ok()) << p.error().message();
  ASSERT_EQ(p->allow.size(), 3u);
  EXPECT_EQ(p->allow[0].digest.alg, crypto::HashAlg::kSha1);  // sha1 sorts first
  for (std::size_t i = 1; i < p->allow.size(); ++i) {
    EXPECT_TRUE(p->allow[i - 1].digest.alg < p->allow[i].digest.alg ||
                p->allow[i - 1].digest.hex() < p->allow[i].digest.hex());
  }
  for (const Allow& x : p->allow) {
    if (digest_text(x.digest) == a) {
      EXPECT_EQ(x.paths, (std::vector<std::string>{"/a", "/b"}));
    }
    if (digest_text(x.digest) == b) {
      EXPECT_EQ(x.paths, (std::vector<std::string>{"/y", "/z"}));
    }
  }
  EXPECT_EQ(p->excludes, (std::vector<std::string>{"/proc/", "/tmp/"}));
}

TEST(PolicyParse, SignedDocumentsMustBeCanonical) {
  Policy p = testing::sample_policy();
  auto key = crypto::PrivateKey::generate(crypto::KeyType::kEd25519);
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(sign_policy(p, *key, {}).ok());
  auto doc = ordered_json::parse(to_json(p));
  ASSERT_GE(doc["allow"].size(), 2u);
  std::swap(doc["allow"][0], doc["allow"][1]);
  expect_rejected(doc.dump(), {"sorted by digest"});
  // Unsorted paths in one entry, too.
  doc = ordered_json::parse(to_json(p));
  for (auto& item : doc["allow"]) {
    if (item.contains("paths") && item["paths"].size() >= 2) {
      std::swap(item["paths"][0], item["paths"][1]);
    }
  }
  expect_rejected(doc.dump(), {"sorted"});
}

TEST(PolicyParse, SignedDocumentsAllowNoOtherWhitespace) {
  // JSON ignores whitespace between tokens: replacing any whitespace byte of a signed
  // policy by another whitespace byte keeps every value, and must still be refused.
  Policy p = testing::sample_policy();
  auto key = crypto::PrivateKey::generate(crypto::KeyType::kEd25519);
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(sign_policy(p, *key, {}).ok());
  const std::string text = to_json(p);
  ASSERT_TRUE(parse_policy(text).ok());
  std::size_t tried = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (std::string_view(" \t\n\r").find(text[i]) == std::string_view::npos) continue;
    for (char ws : {' ', '\t', '\n', '\r'}) {
      if (ws == text[i]) continue;
      std::string changed = text;
      changed[i] = ws;
      auto r = parse_policy(changed);
      // Inside a string (a PEM certificate's line ends) the value changes instead.
      EXPECT_FALSE(r.ok() && r->signature && signed_bytes(*r) == signed_bytes(p) &&
                   r->signature->certificates == p.signature->certificates)
          << "byte " << i << " -> " << static_cast<int>(ws);
      ++tried;
    }
  }
  EXPECT_GT(tried, 100u);
}

TEST(PolicyParse, SignatureMemberRules) {
  Policy p = testing::sample_policy();
  auto key = crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(sign_policy(p, *key, {}).ok());
  ordered_json good = ordered_json::parse(to_json(p));
  auto edited = [&](const std::function<void(ordered_json&)>& edit) {
    ordered_json d = good;
    edit(d["signature"]);
    return d.dump();
  };
  EXPECT_TRUE(parse_policy(good.dump(2) + "\n").ok());
  // The same values in another layout (compact) are refused for a signed policy.
  expect_rejected(good.dump(), {"byte for byte"});
  expect_rejected(edited([](ordered_json& s) { s["extra"] = 1; }),
                  {"signature", "unknown member \"extra\""});
  expect_rejected(edited([](ordered_json& s) { s.erase("value"); }),
                  {"signature", "missing member \"value\""});
  expect_rejected(edited([](ordered_json& s) { s.erase("alg"); }), {"missing member \"alg\""});
  expect_rejected(edited([](ordered_json& s) { s.erase("key_id"); }),
                  {"missing member \"key_id\""});
  expect_rejected(edited([](ordered_json& s) {
                    s["key_id"] = digest_text(digest_of("k", crypto::HashAlg::kSha384));
                  }),
                  {"signature.key_id", "sha256"});
  // One spelling per value: base64 without padding, with whitespace, or URL-safe is refused.
  std::string value = good["signature"]["value"];
  expect_rejected(
      edited([&](ordered_json& s) { s["value"] = value.substr(0, 4) + "\n" + value.substr(4); }),
      {"signature.value", "base64"});
  std::string unpadded = value;
  while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
  if (unpadded != value) {
    expect_rejected(edited([&](ordered_json& s) { s["value"] = unpadded; }), {"base64"});
  }
  expect_rejected(edited([&](ordered_json& s) { s["value"] = ""; }), {"base64"});
  expect_rejected(edited([&](ordered_json& s) { s["value"] = "AB=="; }),
                  {"base64"});  // 'B' has stray bits
  expect_rejected(edited([&](ordered_json& s) { s["value"] = "-_-_"; }), {"base64"});
  expect_rejected(edited([](ordered_json& s) { s["certificates"] = ordered_json::array(); }),
                  {"signature.certificates", "1 to 8"});
  expect_rejected(edited([](ordered_json& s) { s["certificates"] = {"not a certificate"}; }),
                  {"signature.certificates[0]"});
}

}  // namespace
}  // namespace ctrust::policy

namespace ctrust::policy {
namespace {

TEST(PolicyMerge, UnionOfEntriesImagesAndExcludesWithoutSignature) {
  Policy base = testing::sample_policy();
  base.signature = Signature{"ed25519", testing::digest_of("k"), Bytes{1, 2, 3}, {}};
  Policy other = testing::sample_policy();
  other.name = "other";
  other.images = {testing::digest_of("image 2")};
  other.allow = {Allow{testing::digest_of("app"), {"/srv/app"}},
                 Allow{testing::digest_of("new tool"), {"/bin/new"}}};
  other.excludes = {"/var/cache/"};
  ASSERT_TRUE(merge_into(base, {other}).ok());
  EXPECT_EQ(base.name, "web frontend");  // the header is the first policy's
  EXPECT_FALSE(base.signature.has_value());
  EXPECT_EQ(base.images.size(), 2u);
  EXPECT_EQ(base.excludes, (std::vector<std::string>{"/tmp/", "/var/cache/"}));
  ASSERT_EQ(base.allow.size(), 4u);
  for (const Allow& a : base.allow) {
    if (a.digest == testing::digest_of("app")) {
      EXPECT_EQ(a.paths, (std::vector<std::string>{"/opt/app/bin/*", "/srv/app", "/usr/bin/app"}));
    }
  }
}

TEST(PolicyMerge, AnyImageInOneMeansAnyImageInTheUnion) {
  Policy base = testing::sample_policy();
  Policy other = testing::sample_policy();
  other.images.clear();
  ASSERT_TRUE(merge_into(base, {other}).ok());
  EXPECT_TRUE(base.images.empty());
  // And the other way round.
  Policy first = testing::sample_policy();
  first.images.clear();
  ASSERT_TRUE(merge_into(first, {testing::sample_policy()}).ok());
  EXPECT_TRUE(first.images.empty());
}

}  // namespace
}  // namespace ctrust::policy
