// Fuzz target: HTTP request handling. The input is the bytes a client sends on a new connection to a real
// server (server_harness.hpp), with app "fuzz" deployed: Beast parses them, the server routes each request
// (keep-alive and pipelining included), checks the token and answers; a call or spawn reaches the
// argument checks against the deployed signatures. Seeds are requests of docs/http-api.md.
//
// Whatever arrives, the server must close the connection once the client has finished sending (or the
// fuzzer reports a timeout), keep accepting connections, answer only in HTTP, and answer no API request
// with success unless it carried the token.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_target.hpp"
#include "server_harness.hpp"

namespace {

/// One response of the answer: its status and its header block.
struct response {
  int status = 0;
  std::string_view head;
};

/// Splits the server's answer into its responses, checking that each is well-formed HTTP/1.1: a status
/// line, headers, and a body of its Content-Length (an event stream's runs to the end).
std::vector<response> responses(std::string_view answer) {
  std::vector<response> out;
  while (!answer.empty()) {
    FUZZ_CHECK(answer.starts_with("HTTP/1.1 ") && answer.size() >= 12,
               "the server answered with something else than an HTTP/1.1 response");
    const std::size_t head_end = answer.find("\r\n\r\n");
    FUZZ_CHECK(head_end != std::string_view::npos, "a response's header block does not end");
    response r{std::atoi(std::string(answer.substr(9, 3)).c_str()), answer.substr(0, head_end)};
    out.push_back(r);
    answer.remove_prefix(head_end + 4);
    if (r.head.find("Content-Type: text/event-stream") != std::string_view::npos) break;
    const std::size_t length_at = r.head.find("Content-Length: ");
    FUZZ_CHECK(length_at != std::string_view::npos, "a response has no Content-Length");
    const std::size_t length = std::strtoull(r.head.data() + length_at + 16, nullptr, 10);
    FUZZ_CHECK(length <= answer.size(), "a response is shorter than its Content-Length");
    answer.remove_prefix(length);
  }
  return out;
}

bool dashboard_file(std::string_view head) {
  for (const char* type : {"text/html", "text/css", "text/javascript"}) {
    if (head.find(std::string("Content-Type: ") + type) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string answer = fuzz::exchange(input);
  const auto answered = responses(answer);
  // Without the token in the input (in a header or, percent-encoded, in the query), the only successes
  // are the dashboard's static files.
  if (input.find(fuzz::token) == std::string_view::npos && input.find('%') == std::string_view::npos) {
    for (const response& r : answered) {
      FUZZ_CHECK(r.status / 100 != 2 || dashboard_file(r.head),
                 "an API request without the token succeeded:\n" + std::string(r.head));
    }
  }
  return 0;
}

std::vector<std::pair<std::string, std::string>> fuzz_seeds() {
  const std::string auth = std::string("Authorization: Bearer ") + fuzz::token + "\r\n";
  const auto get = [&](const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n";
  };
  const auto post = [&](const std::string& target, const std::string& body, const std::string& extra = "") {
    return "POST " + target + " HTTP/1.1\r\nHost: x\r\n" + auth + extra +
           "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  const std::string fn = "/v1/apps/fuzz/functions/";
  return {
      {"dashboard", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"dashboard_asset", "GET /assets/app.js HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"no_token", "GET /v1/apps HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"wrong_token", "GET /v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n"},
      {"token_in_query", "GET /v1/apps?token=fuzz-token HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"apps", get("/v1/apps")},
      {"app", get("/v1/apps/fuzz")},
      {"unknown_app", get("/v1/apps/nope")},
      {"containers", get("/v1/containers")},
      {"calls", get("/v1/calls?limit=5&app=fuzz")},
      {"metrics", get("/metrics")},
      {"call_square", post(fn + "square/call?timeout=1", "[7]")},
      {"call_wrong_type", post(fn + "square/call", "[\"seven\"]")},
      {"call_wrong_count", post(fn + "square/call", "[1, 2]")},
      {"call_greet", post(fn + "greet/call", R"(["ferry", [1, -2], {"pi": 3.14}])")},
      {"call_nearest", post(fn + "nearest/call", R"([{"x": 1.5, "y": 2}, null, [255, "00ff"]])")},
      {"call_nothing", post(fn + "nothing/call?timeout=0", "[]")},
      {"call_bad_json", post(fn + "square/call", "[7")},
      {"call_unknown_function", post(fn + "cube/call", "[7]")},
      {"spawn_with_key", post(fn + "square/spawn", "[7]", "Idempotency-Key: k1\r\n")},
      {"call_status", get("/v1/calls/fc-0000000000000001")},
      {"call_graph", get("/v1/calls/fc-0000000000000001/graph")},
      {"call_logs", get("/v1/calls/fc-0000000000000001/logs?after=0")},
      {"app_logs", get("/v1/apps/fuzz/logs?limit=10")},
      {"cancel", post("/v1/calls/fc-0000000000000001/cancel", "")},
      {"call_events", get("/v1/calls/fc-0000000000000001/events")},
      {"app_events", get("/v1/apps/fuzz/events")},
      {"keep_alive_pipeline", get("/v1/apps") + get("/v1/containers") + post(fn + "square/call", "[3]")},
      {"chunked_body", "POST " + fn + "square/call HTTP/1.1\r\nHost: x\r\n" + auth +
                           "Transfer-Encoding: chunked\r\n\r\n3\r\n[7]\r\n0\r\n\r\n"},
      {"connection_close", "GET /v1/apps HTTP/1.0\r\n" + auth + "Connection: close\r\n\r\n"},
      {"malformed_request_line", "GET\r\n\r\n"},
      {"unknown_route", get("/v1/nothing/here")},
  };
}
