#include "wire/protocol.hpp"

#include "wire/frame.hpp"

namespace ferry::wire {

void encode_error(detail::buffer& out, const error_record& e) { codec<error_record>::encode(out, e); }

error_record decode_error(std::span<const char> payload) {
  detail::reader r{payload};
  auto record = ferry::decode<error_record>(r);                   // (a code no status has is a DecodeError)
  if (record.code == status::ok) record.code = status::internal;  // ok is no failure
  return record;
}

namespace {
bool bound_text(std::string& text, std::size_t limit) {
  if (text.size() <= limit) return false;
  std::size_t keep = limit;
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) --keep;  // not inside a character
  const std::size_t cut = text.size() - keep;
  text.resize(keep);
  text += "... (" + std::to_string(cut) + " more bytes not kept)";
  return true;
}
}  // namespace

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char ch : name) {
    const bool letter_or_digit = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!letter_or_digit && ch != '-' && ch != '_') return false;
  }
  return true;
}

std::string resources_problem(double cpu, std::int64_t memory_mb, std::int64_t gpus, std::string_view placement) {
  if (!(cpu >= 0 && cpu <= 4096)) return "cpu must be between 0 and 4096";
  if (memory_mb < 0 || gpus < 0 || gpus > 1024) return "memory_mb must be at least 0, and gpus between 0 and 1024";
  if (placement.size() > 128) return "placement must be at most 128 characters";
  for (char ch : placement) {
    const bool letter_or_digit = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!letter_or_digit && std::string_view("-_.:=/").find(ch) == std::string_view::npos) {
      return "placement must be one label: letters, digits and '-_.:=/' (such as \"a100\" or \"zone=eu\")";
    }
  }
  return "";
}

bool bound_error(error_record& e) {
  const bool message_cut = bound_text(e.message, max_error_message_size);
  const bool stack_cut = bound_text(e.stack, max_error_stack_size);
  return message_cut || stack_cut;
}

const char* to_string(message_kind kind) {
  switch (kind) {
    case message_kind::hello:
      return "hello";
    case message_kind::welcome:
      return "welcome";
    case message_kind::refused:
      return "refused";
    case message_kind::register_app:
      return "register_app";
    case message_kind::app_registered:
      return "app_registered";
    case message_kind::call:
      return "call";
    case message_kind::result:
      return "result";
    case message_kind::input:
      return "input";
    case message_kind::output:
      return "output";
    case message_kind::cancel:
      return "cancel";
    case message_kind::cancel_input:
      return "cancel_input";
    case message_kind::await_call:
      return "await_call";
    case message_kind::release:
      return "release";
    case message_kind::request:
      return "request";
    case message_kind::reply:
      return "reply";
    case message_kind::log:
      return "log";
    case message_kind::progress:
      return "progress";
    case message_kind::agent_ready:
      return "agent_ready";
    case message_kind::launch:
      return "launch";
    case message_kind::launched:
      return "launched";
    case message_kind::signal_container:
      return "signal_container";
    case message_kind::container_output:
      return "container_output";
    case message_kind::container_exited:
      return "container_exited";
    case message_kind::fetch_binary:
      return "fetch_binary";
    case message_kind::binary_chunk:
      return "binary_chunk";
    case message_kind::heartbeat:
      return "heartbeat";
    case message_kind::container_stats:
      return "container_stats";
    case message_kind::drain_output:
      return "drain_output";
    case message_kind::output_drained:
      return "output_drained";
    case message_kind::tail_hop:
      return "tail_hop";
  }
  return "unknown";
}

std::optional<frame> parse_frame(std::span<const char> body, std::string& error) {
  detail::reader r{body};
  if (r.at_end() || mp_typeof(*r.pos) != MP_ARRAY || mp_check_array(r.pos, r.end) > 0) {
    error = "frame does not start with a MessagePack array header";
    return std::nullopt;
  }
  const std::uint32_t fields = mp_decode_array(&r.pos);
  if (fields == 0 || r.at_end() || mp_typeof(*r.pos) != MP_UINT || mp_check_uint(r.pos, r.end) > 0) {
    error = "frame header has no message kind";
    return std::nullopt;
  }
  const std::uint64_t kind = mp_decode_uint(&r.pos);
  if (kind < static_cast<std::uint64_t>(message_kind::hello) || kind > last_message_kind) {
    error = "unknown message kind " + std::to_string(kind);
    return std::nullopt;
  }
  // Find where the header ends (and so where the payload starts) by checking each field.
  const detail::reader header = r;
  for (std::uint32_t i = 1; i < fields; ++i) {
    if (!detail::skip_value(r)) {
      error = "frame header of " + std::string(to_string(static_cast<message_kind>(kind))) + " is truncated";
      return std::nullopt;
    }
  }
  return frame{static_cast<message_kind>(kind), header, fields - 1,
               std::span<const char>(r.pos, static_cast<std::size_t>(r.end - r.pos)), nullptr};
}

}  // namespace ferry::wire
