// Fuzz target: the handshake, and what follows it on a wire connection. The input is the bytes a peer
// sends on a new connection to a real server (server_harness.hpp), from its first byte: the server tells
// HTTP from its protocol by them, splits frames, checks the hello (version, token, role), then takes the
// frames a client or a container may send. Seeds start with a valid hello (token "fuzz-token").
//
// Whatever arrives, the server must close the connection once the peer has finished sending (or the fuzzer
// reports a timeout), keep accepting connections, and answer a hello as the protocol says: a well-formed
// hello from a client with the right version and token gets `welcome`, any other hello gets `refused`.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "fuzz_target.hpp"
#include "seed_frames.hpp"
#include "server_harness.hpp"
#include "wire/frame.hpp"
#include "wire/protocol.hpp"

namespace {

namespace wire = ferry::wire;

/// The first frame in `bytes`, when it is complete and well formed (its header may still be malformed).
std::optional<wire::frame> first_frame(std::string_view bytes) {
  if (bytes.size() < wire::length_prefix_size) return std::nullopt;
  const std::uint32_t length = wire::read_length_prefix(bytes.data());
  if (bytes.size() - wire::length_prefix_size < length) return std::nullopt;
  std::string error;
  return wire::parse_frame({bytes.data() + wire::length_prefix_size, length}, error);
}

/// What the server must answer first to `input`'s first frame: welcome, refused, or nothing to check.
std::optional<wire::message_kind> expected_answer(std::string_view input) {
  if (input.size() >= 4 && input[3] != 0) return std::nullopt;  // sniffed as HTTP, or over the frame limit
  const auto hello = first_frame(input);
  if (!hello || hello->kind != wire::message_kind::hello) return std::nullopt;
  wire::hello_header header;
  try {
    header = hello->decode_header<wire::hello_header>();
  } catch (const ferry::DecodeError&) {
    return std::nullopt;  // malformed: the server closes without an answer
  }
  const auto& [version, token, role, container_id, pid] = header;
  const bool client = role == static_cast<std::uint8_t>(wire::peer_role::client);
  const bool accepted = version == wire::protocol_version && token == fuzz::token && client;
  return accepted ? wire::message_kind::welcome : wire::message_kind::refused;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string answer = fuzz::exchange(input);
  // A peer may stop or replace the deployed app the next inputs expect: put it back.
  if (input.find("stop") != std::string_view::npos || input.find("deploy") != std::string_view::npos)
    fuzz::deploy_app();
  if (const auto expected = expected_answer(input)) {
    const auto reply = first_frame(answer);
    FUZZ_CHECK(reply.has_value(), "the server answered a hello with no complete frame");
    FUZZ_CHECK(reply->kind == *expected, std::string("the server answered a hello with ") +
                                             wire::to_string(reply->kind) + ", not " + wire::to_string(*expected));
  }
  return 0;
}

std::vector<std::pair<std::string, std::string>> fuzz_seeds() {
  using fuzz::frame_bytes;
  using fuzz::values;
  using wire::message_kind;
  const auto hello = [](std::uint32_t version, const std::string& token, std::uint8_t role, std::uint64_t container) {
    return frame_bytes(message_kind::hello, wire::hello_header{version, token, role, container, 4321});
  };
  const std::string client = hello(wire::protocol_version, fuzz::token, 0, 0);
  const auto call = [](std::uint64_t id, const std::string& app, const std::string& fn, std::uint8_t flags,
                       std::vector<wire::dependency> deps, const std::function<void(ferry::detail::buffer&)>& args) {
    return frame_bytes(message_kind::call, wire::call_header{id, app, fn, flags, std::move(deps), 0}, args);
  };
  const auto request = [](std::uint64_t id, const std::string& verb, const std::string& subject,
                          const std::function<void(ferry::detail::buffer&)>& payload = {}) {
    return frame_bytes(message_kind::request, wire::request_header{id, verb, subject}, payload);
  };
  const auto square_args = values(std::tuple<std::int64_t>{7});
  const wire::function_spec spec{"echo", "string(string)", 2, 2, 1000, wire::retry_spec{1, 10, 2.0, 100}, 0, 0, 1000,
                                 ""};
  return {
      {"hello_client", client},
      {"hello_wrong_token", hello(wire::protocol_version, "not-the-token", 0, 0)},
      {"hello_old_version", hello(0, fuzz::token, 0, 0)},
      {"hello_unknown_role", hello(wire::protocol_version, fuzz::token, 7, 0)},
      {"hello_unexpected_container", hello(wire::protocol_version, fuzz::token, 1, 5)},
      {"call_before_hello", call(1, "fuzz", "square", wire::deliver_result, {}, square_args)},
      {"call_deployed", client + call(1, "fuzz", "square", wire::deliver_result, {}, square_args)},
      {"call_bad_arguments",
       client + call(1, "fuzz", "square", wire::deliver_result, {}, values(std::tuple<std::string>{"seven"}))},
      {"call_unknown_function", client + call(1, "fuzz", "cube", wire::deliver_result, {}, square_args)},
      {"call_unknown_app", client + call(1, "nope", "square", wire::deliver_result, {}, square_args)},
      {"call_graph",
       client + call(1, "fuzz", "square", wire::keep_result, {}, square_args) +
           call(2, "fuzz", "square", wire::deliver_result, {{0, 1}}, values(std::tuple<std::monostate>{})) +
           frame_bytes(message_kind::await_call, wire::await_call_header{1}) +
           frame_bytes(message_kind::cancel, wire::cancel_header{2}) +
           frame_bytes(message_kind::release, wire::release_header{1})},
      {"register_app_and_call",
       client + frame_bytes(message_kind::register_app, wire::register_app_header{"seed", "/bin/false", {spec}, {}}) +
           call(1, "seed", "echo", wire::deliver_result, {}, values(std::tuple<std::string>{"hi"}))},
      {"requests",
       client + request(1, "apps", "") + request(2, "containers", "") + request(3, "calls", "") +
           request(4, "function", "fuzz.square") + request(5, "get", "fc-0000000000000001", values(std::uint32_t{0})) +
           request(6, "cancel", "fc-0000000000000001") +
           request(7, "logs", "fuzz", values(std::tuple<std::string, bool>{"", false})) + request(8, "nonsense", "")},
      {"spawn_and_get", client +
                            request(1, "spawn", "fuzz.square",
                                    values(std::tuple<std::string, std::tuple<std::int64_t>>{"seed-key", {7}})) +
                            request(2, "get", "fc-0000000000000001", values(std::uint32_t{100}))},
      {"deploy_and_stop",
       client +
           request(
               1, "deploy", "other",
               values(std::tuple<std::vector<wire::function_spec>, ferry::bytes, std::string, std::vector<std::string>>{
                   {spec}, {std::byte{'#'}, std::byte{'!'}}, "other", {"--flag"}})) +
           request(2, "stop", "other")},
      {"logs_follow", client + request(1, "logs", "fuzz", values(std::tuple<std::string, bool>{"", true}))},
      {"output_from_a_client",
       client + frame_bytes(message_kind::output, wire::output_header{1, wire::status::ok}, values(1))},
      {"tail_hop_from_a_client", client + frame_bytes(message_kind::tail_hop, wire::tail_hop_header{1}, values(1))},
      {"frame_over_the_limit", client + std::string("\xff\xff\x7f\x00", 4)},
  };
}
