// The HTTP API's behaviour at its edges, against a standalone server with the e2e app deployed as "demo"
// (docs/http-api.md is the reference; its examples are checked by tests/docs/http_api_doc_test.mjs).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;

/// A standalone server with this test binary deployed as "demo".
struct demo_server {
  ferry_server server;
  demo_server() { EXPECT_EQ(server.cli({"deploy", "--name", "demo", E2E_BINARY}).code, 0); }
  std::string status_of(const std::string& call_id) const {
    const auto call = boost::json::parse(server.http_get("/v1/calls/" + call_id));
    return call.at("status").as_string().c_str();
  }
};

TEST(http_api, a_running_call_reads_cancelling_from_the_moment_it_is_cancelled_until_its_body_stops) {
  demo_server demo;
  const auto spawned = demo.server.http("POST", "/v1/apps/demo/functions/ignore_cancel/spawn", "[60]");
  ASSERT_EQ(spawned.status, 202) << spawned.body;
  const std::string call_id = boost::json::parse(spawned.body).at("call_id").as_string().c_str();
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (demo.status_of(call_id) != "running" && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);  // (polling the server's state, with a deadline)
  }
  ASSERT_EQ(demo.status_of(call_id), "running");
  const auto cancelled = demo.server.http("POST", "/v1/calls/" + call_id + "/cancel");
  EXPECT_EQ(cancelled.status, 200) << cancelled.body;
  // The body ignores cancellation, so it still runs: the call says it is being cancelled, not "running".
  EXPECT_EQ(demo.status_of(call_id), "cancelling");
}

TEST(http_api, a_query_number_out_of_range_or_malformed_is_a_400_naming_the_parameter) {
  demo_server demo;
  const std::vector<std::pair<std::string, std::string>> bad_calls{
      {"timeout=-1", "timeout must be a number from 0 to 3600, not '-1'"},
      {"timeout=abc", "timeout must be a number from 0 to 3600, not 'abc'"},
      {"timeout=5s", "not '5s'"},
      {"timeout=1e9", "not '1e9'"},
      {"timeout=nan", "not 'nan'"},
  };
  for (const auto& [query, message] : bad_calls) {
    const auto r = demo.server.http("POST", "/v1/apps/demo/functions/square/call?" + query, "[3]");
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_THAT(r.body, HasSubstr(message)) << query;
  }
  for (const std::string query : {"limit=-5", "limit=0", "limit=2.5", "limit=ten"}) {
    const auto r = demo.server.http("GET", "/v1/calls?" + query);
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_THAT(r.body, HasSubstr("limit must be a whole number from 1 to 10000")) << query;
  }
  const auto logs = demo.server.http("GET", "/v1/apps/demo/logs?after=-1");
  EXPECT_EQ(logs.status, 400);
  EXPECT_THAT(logs.body, HasSubstr("after must be a whole number"));
  // Well-formed ones still work.
  const auto ok = demo.server.http("POST", "/v1/apps/demo/functions/square/call?timeout=2.5", "[3]");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_THAT(ok.body, HasSubstr("\"result\":9"));
}

TEST(http_api, a_target_that_is_not_a_path_and_query_is_a_400_and_percent_encoding_is_decoded) {
  demo_server demo;
  for (const std::string target : {"/v1/apps/%zz", "/v1/apps/demo/functions/sq%uare"}) {
    const auto r = demo.server.http("GET", target);
    EXPECT_EQ(r.status, 400) << target << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr("is not a path and query")) << target;
  }
  // Percent-encoded path segments and query values (and '+' for a space in a query) are decoded.
  const auto app = demo.server.http("GET", "/v1/apps/d%65mo");
  EXPECT_EQ(app.status, 200) << app.body;
  const auto calls = demo.server.http("GET", "/v1/calls?app=d%65mo&limit=%32");
  EXPECT_EQ(calls.status, 200) << calls.body;
  const auto spaced = demo.server.http("GET", "/v1/calls?limit=1+0");
  EXPECT_EQ(spaced.status, 400) << spaced.body;
  EXPECT_THAT(spaced.body, HasSubstr("not '1 0'"));
}

}  // namespace
}  // namespace e2e
