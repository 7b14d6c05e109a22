// Wire frames for the fuzz targets' seeds, written with the protocol's own frame_writer.
#pragma once

#include <functional>
#include <string>

#include "wire/frame.hpp"
#include "wire/protocol.hpp"

namespace fuzz {

/// One frame as it travels: the length prefix, the header, then what `payload` appends.
template <class Header>
std::string frame_bytes(ferry::wire::message_kind kind, const Header& header,
                        const std::function<void(ferry::detail::buffer&)>& payload = {}) {
  ferry::detail::buffer out;
  ferry::wire::frame_writer writer(out, kind, header);
  if (payload) payload(writer.payload());
  writer.finish();
  return std::string(out.data(), out.size());
}

/// A payload of encoded values: a call's arguments, a request's fields.
template <class... T>
std::function<void(ferry::detail::buffer&)> values(const T&... v) {
  return [=](ferry::detail::buffer& out) { (ferry::encode(out, v), ...); };
}

}  // namespace fuzz
