// JSON at the edge (the CLI's `ferry call`, later the HTTP API): JSON values to the MessagePack values
// ferry's codec reads, and back. Integers stay integers, so a JSON 3 reaches an int64 parameter as one.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>
#include <ferry/detail/buffer.hpp>
#include <string>

namespace ferry::codec_json {

/// Appends `value` as MessagePack.
void to_msgpack(const boost::json::value& value, detail::buffer& out);

/// Reads one MessagePack value as JSON (bin as a string of hex digits). Throws ferry::DecodeError for
/// malformed input.
boost::json::value to_json(detail::reader& in);

/// What is wrong with `arguments` as the arguments of `function`, whose signature (as
/// ferry::detail::describe_signature writes it, `int64(string,vector<int64>)`) is `signature`: a message
/// naming the argument, its expected type and what it got; "" when they fit. Struct parameters are only
/// checked to be JSON objects (their fields are the container's to check).
std::string check_arguments(const std::string& function, const std::string& signature,
                            const boost::json::array& arguments);

}  // namespace ferry::codec_json
