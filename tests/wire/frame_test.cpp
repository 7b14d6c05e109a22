// Unit tests of the wire framing: frame_writer, parse_frame, decode_header and the error record payload.
#include "wire/frame.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <ferry/function.hpp>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "wire/protocol.hpp"

namespace {

using ferry::DecodeError;
using ferry::detail::buffer;
using ferry::detail::reader;
using ferry::wire::frame;
using ferry::wire::frame_writer;
using ferry::wire::message_kind;
using ferry::wire::parse_frame;

using call_arguments = std::tuple<std::int64_t, std::string>;

std::string raw(std::initializer_list<unsigned char> bytes) { return {bytes.begin(), bytes.end()}; }

/// Parses `body` (a frame without its length prefix), expecting it to be well formed.
frame parse(std::span<const char> body) {
  std::string error;
  std::optional<frame> f = parse_frame(body, error);
  if (!f) {
    ADD_FAILURE() << "parse_frame rejected a well-formed frame: " << error;
    throw std::runtime_error(error);
  }
  EXPECT_EQ(error, "");
  return *f;
}

/// The error parse_frame reports for `body`, which it must reject.
std::string rejection(const std::string& body) {
  std::string error;
  const std::optional<frame> f = parse_frame(std::span<const char>(body.data(), body.size()), error);
  EXPECT_FALSE(f.has_value()) << "parse_frame accepted a malformed frame";
  EXPECT_FALSE(error.empty());
  return error;
}

/// The frame body at `offset` in `b`, after its length prefix.
std::span<const char> body_at(const buffer& b, std::size_t offset) {
  const std::uint32_t n = ferry::wire::read_length_prefix(b.data() + offset);
  return {b.data() + offset + ferry::wire::length_prefix_size, n};
}

template <class T>
T decode_all(std::span<const char> bytes) {
  reader r{bytes};
  T value = ferry::decode<T>(r);
  EXPECT_TRUE(r.at_end()) << r.remaining() << " bytes left";
  return value;
}

TEST(frame, round_trips_a_call_frame_with_its_header_and_payload) {
  buffer b;
  frame_writer w(b, message_kind::call,
                 ferry::wire::call_header{42, "my-app", "add", ferry::wire::deliver_result, {}, 0});
  ferry::encode(w.payload(), call_arguments{-7, "seven"});
  const std::uint64_t n = w.finish();
  ASSERT_EQ(n + ferry::wire::length_prefix_size, b.size());

  const frame f = parse(body_at(b, 0));
  EXPECT_EQ(f.kind, message_kind::call);
  EXPECT_EQ(f.header_fields, 6u);
  EXPECT_EQ(f.decode_header<ferry::wire::call_header>(),
            (ferry::wire::call_header{42, "my-app", "add", ferry::wire::deliver_result, {}, 0}));
  EXPECT_EQ(decode_all<call_arguments>(f.payload), (call_arguments{-7, "seven"}));
  EXPECT_EQ(f.payload.data() + f.payload.size(), b.data() + b.size());
}

TEST(frame, round_trips_a_frame_with_an_empty_payload) {
  buffer b;
  frame_writer w(b, message_kind::welcome, ferry::wire::welcome_header{"0.1.0", 1024});
  EXPECT_EQ(w.finish(), 1u + 1u + 6u + 3u);  // array header, kind, "0.1.0", uint16 1024
  const frame f = parse(body_at(b, 0));
  EXPECT_EQ(f.kind, message_kind::welcome);
  EXPECT_EQ(f.decode_header<ferry::wire::welcome_header>(), (ferry::wire::welcome_header{"0.1.0", 1024}));
  EXPECT_TRUE(f.payload.empty());
}

TEST(frame, writes_little_endian_length_prefix_excluding_itself) {
  buffer b;
  frame_writer w(b, message_kind::call, ferry::wire::call_header{42, "app", "fn", ferry::wire::deliver_result, {}, 0});
  ferry::encode(w.payload(), std::string(300, 'p'));
  // Header: array header 1 + kind 1 + uint 42 1 + "app" 4 + "fn" 3 + flags 1 + deps [] 1 + parent 0 1 = 13;
  // payload: str16 header 3 + 300.
  EXPECT_EQ(w.finish(), 316u);
  ASSERT_EQ(b.size(), 4u + 316u);
  EXPECT_EQ(std::string(b.data(), 4), raw({0x3c, 0x01, 0x00, 0x00}));
  EXPECT_EQ(ferry::wire::read_length_prefix(b.data()), 316u);
  // The body starts right after the prefix: a 7-element array whose first element is the kind.
  EXPECT_EQ(std::string(b.data() + 4, 2), raw({0x97, 0x06}));
}

TEST(frame, reads_length_prefix_as_little_endian) {
  const std::string prefix = raw({0x04, 0x03, 0x02, 0x81});
  EXPECT_EQ(ferry::wire::read_length_prefix(prefix.data()), 0x81020304u);
}

TEST(frame, parses_several_frames_from_one_buffer_in_order) {
  buffer b;
  {
    frame_writer w(b, message_kind::call,
                   ferry::wire::call_header{1, "app", "first", ferry::wire::deliver_result, {}, 0});
    ferry::encode(w.payload(), call_arguments{1, "one"});
    w.finish();
  }
  {
    frame_writer w(b, message_kind::result, ferry::wire::result_header{1, ferry::wire::status::ok});
    ferry::encode(w.payload(), std::int64_t{100});
    w.finish();
  }
  {
    frame_writer w(b, message_kind::refused, ferry::wire::refused_header{"bad token"});
    w.finish();
  }

  std::size_t offset = 0;
  const frame first = parse(body_at(b, offset));
  offset += ferry::wire::length_prefix_size + body_at(b, offset).size();
  EXPECT_EQ(first.kind, message_kind::call);
  EXPECT_EQ(first.decode_header<ferry::wire::call_header>(),
            (ferry::wire::call_header{1, "app", "first", ferry::wire::deliver_result, {}, 0}));
  EXPECT_EQ(decode_all<call_arguments>(first.payload), (call_arguments{1, "one"}));

  const frame second = parse(body_at(b, offset));
  offset += ferry::wire::length_prefix_size + body_at(b, offset).size();
  EXPECT_EQ(second.kind, message_kind::result);
  EXPECT_EQ(second.decode_header<ferry::wire::result_header>(),
            (ferry::wire::result_header{1, ferry::wire::status::ok}));
  EXPECT_EQ(decode_all<std::int64_t>(second.payload), 100);

  const frame third = parse(body_at(b, offset));
  offset += ferry::wire::length_prefix_size + body_at(b, offset).size();
  EXPECT_EQ(third.kind, message_kind::refused);
  EXPECT_EQ(third.decode_header<ferry::wire::refused_header>(), (ferry::wire::refused_header{"bad token"}));
  EXPECT_TRUE(third.payload.empty());

  EXPECT_EQ(offset, b.size());
}

TEST(frame, decode_header_rejects_wrong_field_count) {
  buffer b;
  frame_writer w(b, message_kind::result, ferry::wire::result_header{9, ferry::wire::status::remote_exception});
  w.finish();
  const frame f = parse(body_at(b, 0));
  try {
    (void)f.decode_header<ferry::wire::call_header>();
    ADD_FAILURE() << "decode_header accepted 2 fields as a 6-field header";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.expected(), "6 header fields for result");
    EXPECT_EQ(e.received(), "2");
  }
}

TEST(frame, decode_header_rejects_wrong_field_types) {
  buffer b;
  frame_writer w(b, message_kind::call,
                 std::tuple<std::string, std::string, std::string, std::uint8_t, std::vector<int>, int>{
                     "id", "app", "fn", 1, {}, 0});
  w.finish();
  const frame f = parse(body_at(b, 0));
  EXPECT_EQ(f.header_fields, 6u);
  try {
    (void)f.decode_header<ferry::wire::call_header>();
    ADD_FAILURE() << "decode_header accepted a string call id";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.expected(), "uint64");
    EXPECT_EQ(e.received(), "string");
  }
}

TEST(frame, decode_header_rejects_out_of_range_field) {
  buffer b;
  frame_writer w(b, message_kind::result, std::tuple<std::uint64_t, std::uint64_t>{1, 256});
  w.finish();
  const frame f = parse(body_at(b, 0));
  EXPECT_THROW((void)f.decode_header<ferry::wire::result_header>(), DecodeError);
}

TEST(frame, parse_frame_rejects_body_not_starting_with_an_array) {
  EXPECT_EQ(rejection(""), "frame does not start with a MessagePack array header");
  EXPECT_EQ(rejection(raw({0x06})), "frame does not start with a MessagePack array header");
  EXPECT_EQ(rejection(raw({0x81, 0x06, 0x06})), "frame does not start with a MessagePack array header");
  EXPECT_EQ(rejection(raw({0xdc, 0x00})), "frame does not start with a MessagePack array header");
}

TEST(frame, parse_frame_rejects_array_without_a_kind) {
  EXPECT_EQ(rejection(raw({0x90})), "frame header has no message kind");
  EXPECT_EQ(rejection(raw({0x91})), "frame header has no message kind");
  EXPECT_EQ(rejection(raw({0x91, 0xa1, 'x'})), "frame header has no message kind");
  EXPECT_EQ(rejection(raw({0x91, 0xff})), "frame header has no message kind");        // negative
  EXPECT_EQ(rejection(raw({0x91, 0xcd, 0x01})), "frame header has no message kind");  // truncated uint16
}

TEST(frame, parse_frame_rejects_unknown_kind) {
  EXPECT_EQ(rejection(raw({0x91, 99})), "unknown message kind 99");
  EXPECT_EQ(rejection(raw({0x91, 0})), "unknown message kind 0");
  EXPECT_EQ(rejection(raw({0x91, 31})), "unknown message kind 31");  // one past tail_hop
  EXPECT_EQ(rejection(raw({0x91, 0xcd, 0x01, 0x06})), "unknown message kind 262");
}

TEST(frame, parse_frame_rejects_truncated_header) {
  // call: [6, 42, <missing>, <missing>]
  EXPECT_EQ(rejection(raw({0x94, 0x06, 0x2a})), "frame header of call is truncated");
  // call: [6, 42, "ab" claimed as 5 bytes]
  EXPECT_EQ(rejection(raw({0x94, 0x06, 0x2a, 0xa5, 'a', 'b'})), "frame header of call is truncated");
  // result: [7, <uint64 with 2 of its 8 bytes>]
  EXPECT_EQ(rejection(raw({0x93, 0x07, 0xcf, 0x00, 0x00})), "frame header of result is truncated");

  // Every proper prefix of a real frame's header is rejected.
  buffer b;
  frame_writer w(b, message_kind::input, ferry::wire::input_header{77, "call-id"});
  w.finish();
  const std::span<const char> body = body_at(b, 0);
  for (std::size_t cut = 0; cut < body.size(); ++cut) {
    SCOPED_TRACE("prefix of " + std::to_string(cut) + " bytes");
    (void)rejection(std::string(body.data(), cut));
  }
}

// Regression: parse_frame skipped header fields with msgpuck's mp_check(), whose `int` count of values
// to skip overflows on an array 32 header claiming 2^31 elements; it accepted this frame.
TEST(frame, parse_frame_rejects_header_field_with_hostile_length) {
  EXPECT_EQ(rejection(raw({0x92, 0x09, 0xdd, 0x80, 0x00, 0x00, 0x00, 0x01})), "frame header of output is truncated");
}

TEST(frame, error_record_round_trips_through_encode_and_decode_error) {
  const ferry::wire::error_record sent{ferry::wire::status::remote_exception,
                                       "std::out_of_range",
                                       "vector::at: index 3 >= size 2",
                                       "lookup",
                                       "call-17",
                                       "#0 lookup(int)\n#1 main"};
  buffer b;
  ferry::wire::encode_error(b, sent);
  const ferry::wire::error_record received = ferry::wire::decode_error(b.view());
  EXPECT_EQ(received.code, ferry::wire::status::remote_exception);
  EXPECT_EQ(received.type, sent.type);
  EXPECT_EQ(received.message, sent.message);
  EXPECT_EQ(received.function, sent.function);
  EXPECT_EQ(received.call_id, sent.call_id);
  EXPECT_EQ(received.stack, sent.stack);
}

TEST(frame, error_record_round_trips_every_failure_status) {
  for (auto code = static_cast<std::uint8_t>(ferry::wire::status::remote_exception);
       code <= static_cast<std::uint8_t>(ferry::wire::status::internal); ++code) {
    buffer b;
    ferry::wire::encode_error(b, {static_cast<ferry::wire::status>(code), "", "m", "", "", ""});
    EXPECT_EQ(ferry::wire::decode_error(b.view()).code, static_cast<ferry::wire::status>(code));
  }
}

TEST(frame, decode_error_maps_ok_to_internal_and_rejects_a_code_no_status_has_naming_it) {
  const auto record = [](std::uint8_t code) {
    buffer b;
    ferry::encode(b, std::tuple<std::uint8_t, std::string, std::string, std::string, std::string, std::string>{
                         code, "", "message", "", "", ""});
    return b;
  };
  const ferry::wire::error_record e = ferry::wire::decode_error(record(0).view());
  EXPECT_EQ(e.code, ferry::wire::status::internal);
  EXPECT_EQ(e.message, "message");
  for (std::uint8_t code : {static_cast<std::uint8_t>(ferry::wire::last_status + 1), std::uint8_t{255}}) {
    try {
      (void)ferry::wire::decode_error(record(code).view());
      ADD_FAILURE() << "status " << int{code} << " decoded";
    } catch (const DecodeError& error) {
      EXPECT_EQ(error.path(), ".code");
      EXPECT_EQ(error.expected(), "ferry::wire::status (0 to 17)");
      EXPECT_EQ(error.received(), std::to_string(code));
    }
  }
}

TEST(frame, decode_error_rejects_malformed_record) {
  buffer b;
  ferry::encode(b, std::tuple<std::uint8_t, std::string>{1, "only two fields"});
  EXPECT_THROW((void)ferry::wire::decode_error(b.view()), DecodeError);
  EXPECT_THROW((void)ferry::wire::decode_error({}), DecodeError);
}

TEST(frame, discard_leaves_the_buffer_as_it_was) {
  buffer b;
  {
    frame_writer kept(b, message_kind::result, ferry::wire::result_header{5, ferry::wire::status::ok});
    ferry::encode(kept.payload(), std::string{"kept"});
    kept.finish();
  }
  const std::string before(b.data(), b.size());

  {
    // Large enough that the buffer grows (and moves) while the discarded frame is written.
    frame_writer discarded(b, message_kind::call,
                           ferry::wire::call_header{6, "app", "fn", ferry::wire::deliver_result, {}, 0});
    ferry::encode(discarded.payload(), std::string(100'000, 'd'));
    discarded.discard();
  }
  EXPECT_EQ(std::string(b.data(), b.size()), before);

  const frame f = parse(body_at(b, 0));
  EXPECT_EQ(f.decode_header<ferry::wire::result_header>(), (ferry::wire::result_header{5, ferry::wire::status::ok}));
  EXPECT_EQ(decode_all<std::string>(f.payload), "kept");

  buffer empty;
  frame_writer(empty, message_kind::hello, ferry::wire::refused_header{"x"}).discard();
  EXPECT_TRUE(empty.empty());
}

TEST(frame, names_message_kinds_and_statuses) {
  EXPECT_STREQ(ferry::wire::to_string(message_kind::call), "call");
  EXPECT_STREQ(ferry::wire::to_string(message_kind::register_app), "register_app");
  EXPECT_STREQ(ferry::wire::to_string(ferry::wire::status::payload_too_large), "payload_too_large");
  EXPECT_STREQ(ferry::wire::to_string(static_cast<message_kind>(99)), "unknown");
}

}  // namespace

// The example in docs/protocol.md, section 8: keep the two in step.
TEST(frame, a_call_frame_is_byte_for_byte_the_one_docs_protocol_shows) {
  buffer b;
  frame_writer w(b, message_kind::call,
                 ferry::wire::call_header{1, "hello", "blocking_function", ferry::wire::deliver_result, {}, 0});
  ferry::detail::encode_arguments(w.payload());
  w.finish();
  EXPECT_EQ(
      std::string(b.data(), b.size()),
      raw({0x1f, 0x00, 0x00, 0x00, 0x97, 0x06, 0x01, 0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0xb1, 0x62, 0x6c, 0x6f, 0x63,
           0x6b, 0x69, 0x6e, 0x67, 0x5f, 0x66, 0x75, 0x6e, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x01, 0x90, 0x00, 0x90}));
}
