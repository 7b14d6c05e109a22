// JSON at the edge (the CLI's `ferry call`, later the HTTP API): JSON values to the MessagePack values
// ferry's codec reads, and back. Integers stay integers, so a JSON 3 reaches an int64 parameter as one.
#pragma once

#include <boost/json/value.hpp>
#include <ferry/detail/buffer.hpp>

namespace ferry::codec_json {

/// Appends `value` as MessagePack.
void to_msgpack(const boost::json::value& value, detail::buffer& out);

/// Reads one MessagePack value as JSON (bin as a string of hex digits). Throws ferry::DecodeError for
/// malformed input.
boost::json::value to_json(detail::reader& in);

}  // namespace ferry::codec_json
