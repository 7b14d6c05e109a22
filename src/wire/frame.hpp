// Framing: writing frames into a buffer and finding them in received bytes. Stateless.
#pragma once

#include <cstdint>
#include <cstring>
#include <ferry/codec.hpp>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "wire/positional.hpp"
#include "wire/protocol.hpp"

namespace ferry::wire {

inline constexpr std::size_t length_prefix_size = 4;

/// A received frame, viewing bytes that stay valid only during the frame handler's call.
struct frame {
  message_kind kind;
  detail::reader header;          // positioned at the first header field after the kind
  std::uint32_t header_fields;    // how many fields follow the kind
  std::span<const char> payload;  // the rest of the frame
  /// The buffer the frame arrived in when it had one of its own (a large frame); null otherwise. Sharing it
  /// keeps the payload past the handler without a copy (wire::payload::keep).
  std::shared_ptr<const detail::buffer> storage;

  /// Decodes the header fields as `Header` (a message's header struct); throws DecodeError when they do not
  /// match. Fields an older peer leaves out (wire::required_fields) keep their defaults.
  template <class Header>
  Header decode_header() const {
    if (header_fields < required_fields<Header>() || header_fields > field_count<Header>) {
      throw DecodeError(std::to_string(field_count<Header>) + " header fields for " + to_string(kind),
                        std::to_string(header_fields));
    }
    Header h{};
    detail::reader r = header;
    decode_fields(r, h, header_fields);
    return h;
  }
};

/// Writes one frame into `out`: begin(), encode the payload, finish(). Frames are appended, so several
/// frames written into one buffer go out in one write. The header is the kind's header struct (a std::tuple
/// of fields writes a header that may match no message, for tests).
class frame_writer {
 public:
  template <class Header>
  frame_writer(detail::buffer& out, message_kind kind, const Header& header) : out_(out), start_(out.size()) {
    out_.resize(start_ + length_prefix_size);
    out_.commit(mp_encode_array(out_.reserve(5), 1 + field_count<Header>));
    codec<std::uint8_t>::encode(out_, static_cast<std::uint8_t>(kind));
    encode_fields(out_, header);
  }
  detail::buffer& payload() { return out_; }
  /// Patches the length prefix; returns the frame's size without the prefix. `sent_apart`: bytes of the
  /// frame that follow in the write but not in the buffer (a payload sent by reference).
  std::uint64_t finish(std::size_t sent_apart = 0) {
    const std::uint64_t n = out_.size() - start_ - length_prefix_size + sent_apart;
    const auto n32 = static_cast<std::uint32_t>(n);
    const unsigned char le[4] = {static_cast<unsigned char>(n32), static_cast<unsigned char>(n32 >> 8),
                                 static_cast<unsigned char>(n32 >> 16), static_cast<unsigned char>(n32 >> 24)};
    std::memcpy(out_.data() + start_, le, 4);
    return n;
  }
  /// Removes the frame from the buffer (after an encoding failure or when it is too large to send).
  void discard() { out_.resize(start_); }

 private:
  detail::buffer& out_;
  std::size_t start_;
};

inline std::uint32_t read_length_prefix(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return std::uint32_t{u[0]} | std::uint32_t{u[1]} << 8 | std::uint32_t{u[2]} << 16 | std::uint32_t{u[3]} << 24;
}

/// Parses the body of one frame (without its length prefix). Returns the reason when it is malformed.
std::optional<frame> parse_frame(std::span<const char> body, std::string& error);

}  // namespace ferry::wire
