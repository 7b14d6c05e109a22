// The wire's messages have named fields, but they travel as the tuples they replaced did (a MessagePack
// array of the fields in order), so that a peer written against the tuples, in this language or another,
// reads them unchanged; and docs/protocol.md, the reference for such peers, names their fields as they do.
#include "wire/protocol.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <regex>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "doc_text.hpp"
#include "wire/frame.hpp"

namespace ferry::wire {
namespace {

using doc_text::doc_section;
using doc_text::matches;
using ::testing::HasSubstr;

// The messages as the protocol declared them before they had names: tuples in wire order.
namespace tuples {
using hello = std::tuple<std::uint32_t, std::string, std::uint8_t, std::uint64_t, std::int64_t>;
using welcome = std::tuple<std::string, std::uint64_t>;
using refused = std::tuple<std::string>;
using retry_spec = std::tuple<std::int32_t, std::uint32_t, double, std::uint32_t>;
/// As programs built before the resource options (cpu, memory_mb, gpus, placement) send it.
using function_spec_v1 = std::tuple<std::string, std::string, std::int32_t, std::int32_t, std::uint32_t, retry_spec,
                                    std::int32_t, std::int32_t, std::uint32_t, std::string>;
using function_spec =
    std::tuple<std::string, std::string, std::int32_t, std::int32_t, std::uint32_t, retry_spec, std::int32_t,
               std::int32_t, std::uint32_t, std::string, double, std::uint64_t, std::uint32_t, std::string>;
using register_app = std::tuple<std::string, std::string, std::vector<function_spec>, std::vector<std::string>>;
using status_only = std::tuple<std::uint8_t>;  // app_registered
using dependency = std::tuple<std::uint32_t, std::uint64_t>;
using call = std::tuple<std::uint64_t, std::string, std::string, std::uint8_t, std::vector<dependency>, std::uint64_t>;
using id_and_status = std::tuple<std::uint64_t, std::uint8_t>;  // result, output, reply
using input = std::tuple<std::uint64_t, std::string>;
using id_only = std::tuple<std::uint64_t>;  // cancel, cancel_input, await_call, release
using request = std::tuple<std::uint64_t, std::string, std::string>;
using progress = std::tuple<std::uint64_t, double, double, std::string>;
using app_row = std::tuple<std::string, std::string, double, std::vector<std::tuple<std::string, std::string>>>;
using call_row = std::tuple<std::string, std::string, std::string, std::string, double, double>;
using container_row_v1 = std::tuple<std::uint64_t, std::string, std::string, std::string, std::uint32_t, std::int64_t,
                                    double, std::uint64_t>;
using container_row = std::tuple<std::uint64_t, std::string, std::string, std::string, std::uint32_t, std::int64_t,
                                 double, std::uint64_t, std::string>;
using log_row = std::tuple<std::uint64_t, double, std::string, std::string, std::string, std::uint8_t, std::string>;
using error_record = std::tuple<std::uint8_t, std::string, std::string, std::string, std::string, std::string>;
}  // namespace tuples

std::string bytes_of(const detail::buffer& b) { return {b.data(), b.size()}; }

template <class T>
std::string encoded(const T& value) {
  detail::buffer b;
  ferry::encode(b, value);
  return bytes_of(b);
}

/// A frame as the tuple-typed protocol wrote it: the length prefix, then the kind and the header's fields in
/// one MessagePack array (written by the codec here, not by frame_writer).
template <class... Field>
std::string tuple_frame(message_kind kind, const std::tuple<Field...>& header) {
  const std::string body = encoded(std::tuple_cat(std::tuple<std::uint8_t>{static_cast<std::uint8_t>(kind)}, header));
  const auto n = static_cast<std::uint32_t>(body.size());
  return std::string{static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16),
                     static_cast<char>(n >> 24)} +
         body;
}

/// frame_writer writes `header` as the frame that carried `before`, and that frame decodes as `header`.
template <class Header, class... Field>
void expect_frame_as_before(message_kind kind, const Header& header, const std::tuple<Field...>& before) {
  SCOPED_TRACE(to_string(kind));
  detail::buffer b;
  frame_writer(b, kind, header).finish();
  const std::string expected = tuple_frame(kind, before);
  EXPECT_EQ(bytes_of(b), expected);
  std::string error;
  const auto f =
      parse_frame(std::span<const char>(expected.data(), expected.size()).subspan(length_prefix_size), error);
  ASSERT_TRUE(f) << error;
  EXPECT_EQ(f->kind, kind);
  EXPECT_EQ(f->decode_header<Header>(), header);
}

/// `value` encodes as `before` did, and `before`'s bytes decode as `value`.
template <class T, class... Field>
void expect_encoded_as_before(const T& value, const std::tuple<Field...>& before) {
  SCOPED_TRACE(codec<T>::name());
  const std::string expected = encoded(before);
  EXPECT_EQ(encoded(value), expected);
  detail::reader r{std::span<const char>(expected.data(), expected.size())};
  EXPECT_EQ(ferry::decode<T>(r), value);
  EXPECT_TRUE(r.at_end());
}

const function_spec spec{
    "square", "int64(int64)", 2, 8,     30'000, {3, 500, 1.5, 70'000}, 1, 1, 60'000, "shop::Order{id:int64}",
    2.5,      4096,           1, "a100"};
const tuples::function_spec spec_tuple{
    "square", "int64(int64)", 2, 8,     30'000, {3, 500, 1.5, 70'000}, 1, 1, 60'000, "shop::Order{id:int64}",
    2.5,      4096,           1, "a100"};

TEST(protocol, every_header_is_the_frame_its_tuple_was) {
  expect_frame_as_before(message_kind::hello, hello_header{protocol_version, "token", 1, 70'000, -5},
                         tuples::hello{protocol_version, "token", 1, 70'000, -5});
  expect_frame_as_before(message_kind::welcome, welcome_header{"0.1.0", 256ull << 20},
                         tuples::welcome{"0.1.0", 256ull << 20});
  expect_frame_as_before(message_kind::refused, refused_header{"invalid token"}, tuples::refused{"invalid token"});
  expect_frame_as_before(message_kind::register_app,
                         register_app_header{"app", "/bin/app", {spec, spec}, {"--flag", "x"}},
                         tuples::register_app{"app", "/bin/app", {spec_tuple, spec_tuple}, {"--flag", "x"}});
  expect_frame_as_before(message_kind::app_registered, app_registered_header{status::bad_arguments},
                         tuples::status_only{2});
  expect_frame_as_before(message_kind::call,
                         call_header{1ull << 40, "app", "add", deliver_result | keep_result, {{0, 3}, {2, 300}}, 77},
                         tuples::call{1ull << 40, "app", "add", deliver_result | keep_result, {{0, 3}, {2, 300}}, 77});
  expect_frame_as_before(message_kind::result, result_header{300, status::unknown_call},
                         tuples::id_and_status{300, 16});
  expect_frame_as_before(message_kind::input, input_header{77, "fc-5e1a9c3f00000001"},
                         tuples::input{77, "fc-5e1a9c3f00000001"});
  expect_frame_as_before(message_kind::output, output_header{77, status::tail_call}, tuples::id_and_status{77, 11});
  expect_frame_as_before(message_kind::cancel, cancel_header{3}, tuples::id_only{3});
  expect_frame_as_before(message_kind::cancel_input, cancel_input_header{70'000}, tuples::id_only{70'000});
  expect_frame_as_before(message_kind::tail_hop, tail_hop_header{77}, tuples::id_only{77});
  expect_frame_as_before(message_kind::await_call, await_call_header{4}, tuples::id_only{4});
  expect_frame_as_before(message_kind::release, release_header{5}, tuples::id_only{5});
  expect_frame_as_before(message_kind::request, request_header{6, "spawn", "app.square"},
                         tuples::request{6, "spawn", "app.square"});
  expect_frame_as_before(message_kind::reply, reply_header{6, status::ok}, tuples::id_and_status{6, 0});
  expect_frame_as_before(message_kind::log,
                         log_row{9, 1.5e9, "app", "square", "fc-1", log_stream::stderr_stream, "a line"},
                         tuples::log_row{9, 1.5e9, "app", "square", "fc-1", 2, "a line"});
  expect_frame_as_before(message_kind::progress, progress_header{77, 1, 10, "one of ten"},
                         tuples::progress{77, 1, 10, "one of ten"});
}

TEST(protocol, fields_added_later_may_be_left_out_by_an_older_peer_and_keep_their_defaults) {
  // A program built before the resource options registers its functions with 10 fields: they decode, asking
  // for nothing.
  const tuples::function_spec_v1 old_spec{"square", "int64(int64)",         2, 8, 30'000, {3, 500, 1.5, 70'000}, 1, 1,
                                          60'000,   "shop::Order{id:int64}"};
  const std::string old_bytes = encoded(old_spec);
  detail::reader r{std::span<const char>(old_bytes.data(), old_bytes.size())};
  const auto decoded = ferry::decode<function_spec>(r);
  function_spec expected = spec;
  expected.cpu = 0;
  expected.memory_mb = 0;
  expected.gpus = 0;
  expected.placement = "";
  EXPECT_EQ(decoded, expected);
  // So does a register_app frame that carries them, and a `ferry ps` reply from an older server.
  const std::string frame =
      tuple_frame(message_kind::register_app,
                  std::tuple<std::string, std::string, std::vector<tuples::function_spec_v1>, std::vector<std::string>>{
                      "app", "/bin/app", {old_spec}, {}});
  std::string error;
  const auto f = parse_frame(std::span<const char>(frame.data(), frame.size()).subspan(length_prefix_size), error);
  ASSERT_TRUE(f) << error;
  EXPECT_EQ(f->decode_header<register_app_header>().functions, std::vector<function_spec>{expected});
  const std::string old_row = encoded(tuples::container_row_v1{1, "app", "square", "ready", 2, 99, 1.5, 7});
  detail::reader rr{std::span<const char>(old_row.data(), old_row.size())};
  EXPECT_EQ(ferry::decode<container_row>(rr), (container_row{1, "app", "square", "ready", 2, 99, 1.5, 7, ""}));
  // Fewer than the fields it always had, or more than it has, are still an error.
  const std::string short_spec = encoded(std::tuple<std::string, std::string>{"square", "int64(int64)"});
  detail::reader sr{std::span<const char>(short_spec.data(), short_spec.size())};
  EXPECT_THROW(ferry::decode<function_spec>(sr), DecodeError);
  const std::string long_row = encoded(std::tuple_cat(tuples::container_row{}, std::tuple<int>{1}));
  detail::reader lr{std::span<const char>(long_row.data(), long_row.size())};
  EXPECT_THROW(ferry::decode<container_row>(lr), DecodeError);
}

TEST(protocol, rows_and_nested_structs_encode_as_their_tuples_did) {
  expect_encoded_as_before(spec, spec_tuple);
  expect_encoded_as_before(retry_spec{-1, 0, 10.0, 1}, tuples::retry_spec{-1, 0, 10.0, 1});
  expect_encoded_as_before(dependency{1, 1ull << 33}, tuples::dependency{1, 1ull << 33});
  expect_encoded_as_before(app_row{"app", "ab12", 1.5e9, {{"square", "int64(int64)"}, {"f", "void()"}}},
                           tuples::app_row{"app", "ab12", 1.5e9, {{"square", "int64(int64)"}, {"f", "void()"}}});
  expect_encoded_as_before(call_row{"fc-1", "app", "square", "ok", 1.5e9, -1},
                           tuples::call_row{"fc-1", "app", "square", "ok", 1.5e9, -1});
  expect_encoded_as_before(container_row{1, "app", "square", "ready", 2, 99, 1.5, 1ull << 32, ""},
                           tuples::container_row{1, "app", "square", "ready", 2, 99, 1.5, 1ull << 32, ""});
  expect_encoded_as_before(log_row{1, 2.5, "app", "square", "", log_stream::stdout_stream, "text"},
                           tuples::log_row{1, 2.5, "app", "square", "", 1, "text"});
  expect_encoded_as_before(error_record{status::remote_exception, "std::out_of_range", "at", "f", "fc-2", "#0 f"},
                           tuples::error_record{1, "std::out_of_range", "at", "f", "fc-2", "#0 f"});
}

// The bytes themselves, for a reader of this test without a MessagePack decoder at hand.
TEST(protocol, an_input_frame_is_the_kind_then_the_attempt_id_then_the_call_id) {
  detail::buffer b;
  frame_writer(b, message_kind::input, input_header{77, "fc-1"}).finish();
  const std::string expected{0x08, 0x00, 0x00, 0x00, char(0x93), 0x08, 0x4d, char(0xa4), 'f', 'c', '-', '1'};
  EXPECT_EQ(bytes_of(b), expected);
}

TEST(protocol, a_decoding_error_names_the_field) {
  // A call row whose status is a number: [0] is the row, .status its field.
  detail::buffer b;
  ferry::encode(b, std::vector<std::tuple<std::string, std::string, std::string, int, double, double>>{
                       {"fc-1", "app", "f", 3, 0, 0}});
  detail::reader r{b.view()};
  try {
    (void)ferry::decode<std::vector<call_row>>(r);
    ADD_FAILURE() << "a number decoded as a status name";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.path(), "[0].status");
    EXPECT_EQ(e.expected(), "string");
  }

  detail::buffer short_row;
  ferry::encode(short_row, std::tuple<std::string>{"fc-1"});
  detail::reader s{short_row.view()};
  try {
    (void)ferry::decode<call_row>(s);
    ADD_FAILURE() << "one field decoded as a call row";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.expected(), "ferry::wire::call_row");
    EXPECT_EQ(e.received(), "array of 1");
  }
}

TEST(protocol, a_status_or_stream_no_enum_value_has_is_a_decoding_error_naming_the_field_and_the_range) {
  // What a peer of this protocol version cannot send: the frame is malformed, not a status called "unknown".
  const auto decode_result = [](std::uint8_t status) {
    const std::string bytes = tuple_frame(message_kind::result, tuples::id_and_status{1, status});
    std::string error;
    const auto f = parse_frame(std::span<const char>(bytes.data(), bytes.size()).subspan(length_prefix_size), error);
    if (!f) throw std::runtime_error(error);
    return f->decode_header<result_header>();
  };
  EXPECT_EQ(decode_result(last_status).status, status::signature_mismatch);
  try {
    (void)decode_result(last_status + 1);
    ADD_FAILURE() << "status " << last_status + 1 << " decoded";
  } catch (const DecodeError& e) {
    EXPECT_THAT(e.what(), HasSubstr(".status"));
    EXPECT_THAT(e.what(), HasSubstr("expected ferry::wire::status (0 to 17), received 18"));
  }
  detail::buffer row;
  ferry::encode(row, tuples::log_row{1, 2.5, "app", "f", "", 3, "text"});
  detail::reader r{row.view()};
  try {
    (void)ferry::decode<log_row>(r);
    ADD_FAILURE() << "stream 3 decoded";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.path(), ".stream");
    EXPECT_EQ(e.expected(), "ferry::wire::log_stream (1 to 2)");
    EXPECT_EQ(e.received(), "3");
  }
}

TEST(protocol, rows_order_as_their_tuples_did) {
  // The containers request sorts its rows, by id first.
  std::vector<container_row> rows{{2, "a", "f", "ready", 0, 1, 0, 0, ""}, {1, "b", "f", "ready", 0, 2, 0, 0, ""}};
  std::sort(rows.begin(), rows.end());
  EXPECT_EQ(rows.front().id, 1u);
  EXPECT_LT((call_row{"fc-1", "a", "f", "ok", 1, 1}), (call_row{"fc-1", "a", "f", "ok", 2, 0}));
}

// --- docs/protocol.md names each message's fields, in order, with their MessagePack types.

/// A message's fields as docs/protocol.md lists them: name and type ("" where it gives none).
using field_list = std::vector<std::pair<std::string, std::string>>;

/// How docs/protocol.md writes a codec's type name: str for a string, array for any vector, an enum as its
/// integer, nothing for a nested message (which it names instead).
std::string doc_type(const std::string& codec_name) {
  if (codec_name == "string") return "str";
  if (codec_name.starts_with("vector<")) return "array";
  if (codec_name.starts_with("enum(")) return codec_name.substr(5, codec_name.size() - 6);
  if (codec_name.find("::") != std::string::npos) return "";
  return codec_name;
}

template <positional T>
field_list fields_in_code() {
  field_list out;
  const T value{};
  std::size_t i = 0;
  std::apply(
      [&](const auto&... field) {
        (out.emplace_back(T::field_names[i++], doc_type(codec<std::remove_cvref_t<decltype(field)>>::name())), ...);
      },
      value.fields());
  return out;
}

/// Each `[name type, name type (a remark), ...]` in `text`, in order.
std::vector<field_list> bracketed_lists(const std::string& text) {
  std::vector<field_list> lists;
  for (const auto& list : matches(text, std::regex(R"(`\[([^`\[\]]*)\]`)"))) {
    const std::string without_remarks = std::regex_replace(list[1].str(), std::regex(R"( *\([^)]*\))"), "");
    field_list fields;
    for (const auto& item : matches(without_remarks, std::regex(R"(([a-z_]+)(?:\s+([a-z0-9]+))?\s*(?:,|$))"))) {
      fields.emplace_back(item[1], item[2]);
    }
    lists.push_back(fields);
  }
  return lists;
}

/// The line of `text` that starts with `start`.
std::string line_starting(const std::string& text, const std::string& start) {
  const std::size_t begin = text.find("\n" + start);
  if (begin == std::string::npos) {
    ADD_FAILURE() << "no line starts with " << start;
    return "";
  }
  return text.substr(begin + 1, text.find('\n', begin + 1) - begin - 1);
}

TEST(protocol, docs_protocol_names_each_kinds_header_fields_as_the_structs_do) {
  const std::string doc = doc_section("protocol.md", "## 3. Message kinds", "`function_spec` is the array");
  const std::map<std::string, field_list> in_code = {
      {"hello", fields_in_code<hello_header>()},
      {"welcome", fields_in_code<welcome_header>()},
      {"refused", fields_in_code<refused_header>()},
      {"register_app", fields_in_code<register_app_header>()},
      {"app_registered", fields_in_code<app_registered_header>()},
      {"call", fields_in_code<call_header>()},
      {"result", fields_in_code<result_header>()},
      {"input", fields_in_code<input_header>()},
      {"output", fields_in_code<output_header>()},
      {"cancel", fields_in_code<cancel_header>()},
      {"cancel_input", fields_in_code<cancel_input_header>()},
      {"await_call", fields_in_code<await_call_header>()},
      {"release", fields_in_code<release_header>()},
      {"request", fields_in_code<request_header>()},
      {"reply", fields_in_code<reply_header>()},
      {"log", fields_in_code<log_row>()},
      {"progress", fields_in_code<progress_header>()},
      {"agent_ready", fields_in_code<agent_ready_header>()},
      {"launch", fields_in_code<launch_header>()},
      {"launched", fields_in_code<launched_header>()},
      {"signal_container", fields_in_code<signal_container_header>()},
      {"container_output", fields_in_code<container_output_header>()},
      {"container_exited", fields_in_code<container_exited_header>()},
      {"fetch_binary", fields_in_code<fetch_binary_header>()},
      {"binary_chunk", fields_in_code<binary_chunk_header>()},
      {"heartbeat", fields_in_code<heartbeat_header>()},
      {"container_stats", fields_in_code<container_stats_header>()},
      {"drain_output", fields_in_code<drain_output_header>()},
      {"output_drained", fields_in_code<drain_output_header>()},
      {"tail_hop", fields_in_code<tail_hop_header>()},
  };
  ASSERT_EQ(in_code.size(), last_message_kind);
  std::map<std::string, field_list> documented;
  // | 8 | `input` | server → container | `attempt_id` uint64, `call_id` str | payload |
  for (const auto& row : matches(doc, std::regex(R"(\n\| *(\d+) \| `([a-z_]+)` *\|[^|\n]*\|([^|\n]*)\|)"))) {
    EXPECT_STREQ(to_string(static_cast<message_kind>(std::stoul(row[1]))), row[2].str().c_str());
    const std::string fields = row[3];
    for (const auto& field : matches(fields, std::regex(R"(`([a-z_]+)` ([a-z0-9]+))"))) {
      documented[row[2]].emplace_back(field[1], field[2]);
    }
  }
  for (const auto& [kind, fields] : in_code) EXPECT_EQ(documented[kind], fields) << "the header of " << kind;
  EXPECT_EQ(documented.size(), in_code.size()) << "docs/protocol.md lists a kind the protocol does not have";

  const std::vector<field_list> deps = bracketed_lists(line_starting(doc, "| 6 |"));
  ASSERT_EQ(deps.size(), 1u);
  EXPECT_EQ(deps[0], fields_in_code<dependency>());
}

TEST(protocol, docs_protocol_names_the_fields_of_function_specs_and_rows_as_the_structs_do) {
  const std::vector<field_list> spec =
      bracketed_lists(doc_section("protocol.md", "`function_spec` is the array", "A `timeout_ms` of 0"));
  ASSERT_EQ(spec.size(), 2u);
  EXPECT_EQ(spec[0], fields_in_code<function_spec>());
  EXPECT_EQ(spec[1], fields_in_code<retry_spec>());

  const std::string verbs =
      doc_section("protocol.md", "Control requests (`request` / `reply`), by verb:", "A `request` with another verb");
  const std::vector<field_list> containers = bracketed_lists(line_starting(verbs, "| `containers` |"));
  ASSERT_EQ(containers.size(), 1u);
  EXPECT_EQ(containers[0], fields_in_code<container_row>());
  const std::vector<field_list> apps = bracketed_lists(line_starting(verbs, "| `apps` |"));
  ASSERT_EQ(apps.size(), 2u);
  EXPECT_EQ(apps[0], fields_in_code<app_row>());
  EXPECT_EQ(apps[1], fields_in_code<app_function>());
  const std::vector<field_list> calls = bracketed_lists(line_starting(verbs, "| `calls` |"));
  ASSERT_EQ(calls.size(), 2u);  // the filter, then the row
  EXPECT_EQ(calls[1], fields_in_code<call_row>());

  const std::string record = doc_section("protocol.md", "When a status is not 0", "- An absent field");
  field_list documented;  // | 0 | `code` | uint8 | the status ... |
  for (const auto& row : matches(record, std::regex(R"(\n\| *\d+ \| `([a-z_]+)` +\| (\w+) +\|)"))) {
    documented.emplace_back(row[1], row[2]);
  }
  EXPECT_EQ(documented, fields_in_code<error_record>());
}

}  // namespace
}  // namespace ferry::wire
