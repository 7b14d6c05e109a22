#include "codec/json.hpp"

#include <msgpuck.h>

#include <boost/json.hpp>
#include <boost/json/serialize.hpp>
#include <cstdint>
#include <cstdlib>
#include <ferry/codec.hpp>
#include <ferry/errors.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::codec_json {

void to_msgpack(const boost::json::value& value, detail::buffer& out) {
  switch (value.kind()) {
    case boost::json::kind::null:
      out.commit(mp_encode_nil(out.reserve(1)));
      return;
    case boost::json::kind::bool_:
      out.commit(mp_encode_bool(out.reserve(1), value.get_bool()));
      return;
    case boost::json::kind::int64: {
      const std::int64_t v = value.get_int64();
      out.commit(v >= 0 ? mp_encode_uint(out.reserve(9), static_cast<std::uint64_t>(v))
                        : mp_encode_int(out.reserve(9), v));
      return;
    }
    case boost::json::kind::uint64:
      out.commit(mp_encode_uint(out.reserve(9), value.get_uint64()));
      return;
    case boost::json::kind::double_:
      out.commit(mp_encode_double(out.reserve(9), value.get_double()));
      return;
    case boost::json::kind::string: {
      const auto& s = value.get_string();
      out.commit(mp_encode_strl(out.reserve(5), static_cast<std::uint32_t>(s.size())));
      out.append(s.data(), s.size());
      return;
    }
    case boost::json::kind::array: {
      const auto& a = value.get_array();
      out.commit(mp_encode_array(out.reserve(5), static_cast<std::uint32_t>(a.size())));
      for (const auto& element : a) to_msgpack(element, out);
      return;
    }
    case boost::json::kind::object: {
      const auto& o = value.get_object();
      out.commit(mp_encode_map(out.reserve(5), static_cast<std::uint32_t>(o.size())));
      for (const auto& [key, element] : o) {
        out.commit(mp_encode_strl(out.reserve(5), static_cast<std::uint32_t>(key.size())));
        out.append(key.data(), key.size());
        to_msgpack(element, out);
      }
      return;
    }
  }
}

namespace {

/// How deeply arrays and maps may nest in a value turned into JSON: far beyond any real result, and
/// shallow enough that walking it cannot exhaust a thread's stack.
constexpr int max_json_depth = 512;

/// Turns a value that detail::skip_value has found complete (so every length in it is in bounds) into JSON.
class json_walker {
 public:
  /// `input_size`: the value's encoded size, which bounds the text of the keys that are not strings.
  explicit json_walker(std::size_t input_size) : key_text_budget_(16 * input_size + 65536) {}

  boost::json::value walk(const char*& p, int depth) {
    if (depth > max_json_depth) {
      throw DecodeError("a MessagePack value nested at most " + std::to_string(max_json_depth) + " deep",
                        "one nested deeper");
    }
    switch (mp_typeof(*p)) {
      case MP_NIL:
        mp_decode_nil(&p);
        return nullptr;
      case MP_BOOL:
        return mp_decode_bool(&p);
      case MP_UINT:
        return mp_decode_uint(&p);
      case MP_INT:
        return mp_decode_int(&p);
      case MP_FLOAT:
        return static_cast<double>(mp_decode_float(&p));
      case MP_DOUBLE:
        return mp_decode_double(&p);
      case MP_STR: {
        std::uint32_t n = 0;
        const char* s = mp_decode_str(&p, &n);
        return boost::json::string(s, n);
      }
      case MP_BIN: {
        std::uint32_t n = 0;
        const char* b = mp_decode_bin(&p, &n);
        static constexpr char hex[] = "0123456789abcdef";
        std::string text;
        text.reserve(2 * std::size_t{n});
        for (std::uint32_t i = 0; i < n; ++i) {
          text.push_back(hex[static_cast<unsigned char>(b[i]) >> 4]);
          text.push_back(hex[static_cast<unsigned char>(b[i]) & 0xf]);
        }
        return boost::json::string(text);
      }
      case MP_ARRAY: {
        const std::uint32_t n = mp_decode_array(&p);
        boost::json::array a;
        a.reserve(n);
        for (std::uint32_t i = 0; i < n; ++i) a.push_back(walk(p, depth + 1));
        return a;
      }
      case MP_MAP: {
        const std::uint32_t n = mp_decode_map(&p);
        boost::json::object o;
        for (std::uint32_t i = 0; i < n; ++i) {
          const std::string name = key_text(walk(p, depth + 1));
          o[name] = walk(p, depth + 1);
        }
        return o;
      }
      case MP_EXT:
      default: {
        mp_next(&p);
        return nullptr;
      }
    }
  }

 private:
  /// A JSON object's key for a map key: a string as it is, anything else as its JSON text. Keys nested in
  /// keys are escaped again at every level, so their text can double per level: it is budgeted.
  std::string key_text(const boost::json::value& key) {
    if (key.is_string()) return std::string(key.get_string());
    std::string text = boost::json::serialize(key);
    if (text.size() > key_text_budget_) {
      throw DecodeError("map keys whose JSON text stays within 16 times the value's size",
                        "keys nested in keys whose text grows past it");
    }
    key_text_budget_ -= text.size();
    return text;
  }

  std::size_t key_text_budget_;
};

}  // namespace

boost::json::value to_json(detail::reader& in) {
  // (Not msgpuck's mp_check: its element count is an int, which a hostile map header overflows.)
  detail::reader check = in;
  if (!detail::skip_value(check)) throw DecodeError("a MessagePack value", "malformed or truncated bytes");
  return json_walker(check.pos - in.pos).walk(in.pos, 0);
}

namespace {

/// Splits "a,b<c,d>,e" at its top-level commas.
std::vector<std::string> split_types(std::string_view list) {
  std::vector<std::string> parts;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i] == '<' || list[i] == '(') ++depth;
    if (list[i] == '>' || list[i] == ')') --depth;
    if (list[i] == ',' && depth == 0) {
      parts.emplace_back(list.substr(start, i - start));
      start = i + 1;
    }
  }
  if (start < list.size()) parts.emplace_back(list.substr(start));
  return parts;
}

std::string describe(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null:
      return "null";
    case boost::json::kind::bool_:
      return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return "the integer " + boost::json::serialize(v);
    case boost::json::kind::double_:
      return "the number " + boost::json::serialize(v);
    case boost::json::kind::string:
      return "a string";
    case boost::json::kind::array:
      return "an array";
    case boost::json::kind::object:
      return "an object";
  }
  return "a value";
}

/// What is wrong with `v` as a `type`, or "". `where` names the place ("" at the top, "[2]", ".x").
std::string check_value(std::string_view type, const boost::json::value& v, const std::string& where) {
  auto mismatch = [&] {
    return (where.empty() ? "" : where + ": ") + "expected " + std::string(type) + ", got " + describe(v);
  };
  const auto open = type.find('<');
  const std::string_view head = type.substr(0, open);
  const std::string_view inner =
      open == std::string_view::npos ? std::string_view{} : type.substr(open + 1, type.size() - open - 2);
  if (head.starts_with("int") || head.starts_with("uint")) {
    const bool is_unsigned = head.starts_with("uint");
    const int bits = std::atoi(std::string(head.substr(is_unsigned ? 4 : 3)).c_str());
    if (!v.is_int64() && !v.is_uint64()) return mismatch();
    if (is_unsigned) {
      if (v.is_int64() && v.get_int64() < 0) return mismatch();
      const std::uint64_t n = v.is_uint64() ? v.get_uint64() : static_cast<std::uint64_t>(v.get_int64());
      if (bits < 64 && n >= (std::uint64_t{1} << bits)) return mismatch() + " (out of range)";
    } else {
      if (v.is_uint64() && v.get_uint64() > static_cast<std::uint64_t>(INT64_MAX))
        return mismatch() + " (out of range)";
      const std::int64_t n = v.is_int64() ? v.get_int64() : static_cast<std::int64_t>(v.get_uint64());
      if (bits < 64 && (n < -(std::int64_t{1} << (bits - 1)) || n >= (std::int64_t{1} << (bits - 1)))) {
        return mismatch() + " (out of range)";
      }
    }
    return "";
  }
  if (head == "float32" || head == "float64") return v.is_number() ? "" : mismatch();
  if (head == "bool") return v.is_bool() ? "" : mismatch();
  if (head == "string" || head == "bytes") return v.is_string() ? "" : mismatch();
  if (head == "optional") return v.is_null() ? "" : check_value(inner, v, where);
  if (head.starts_with("enum(")) return check_value(head.substr(5, head.size() - 6), v, where);
  if (head == "vector") {
    if (!v.is_array()) return mismatch();
    const auto& a = v.get_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (auto problem = check_value(inner, a[i], where + "[" + std::to_string(i) + "]"); !problem.empty())
        return problem;
    }
    return "";
  }
  if (head == "map") {
    if (!v.is_object()) return mismatch();
    const auto types = split_types(inner);
    if (types.size() != 2) return "";
    for (const auto& [key, value] : v.get_object()) {
      if (auto problem = check_value(types[1], value, where + "[\"" + std::string(key) + "\"]"); !problem.empty()) {
        return problem;
      }
    }
    return "";
  }
  if (head == "tuple" || head == "pair") {
    const auto types = split_types(inner);
    if (!v.is_array() || v.get_array().size() != types.size()) {
      return mismatch() + " (an array of " + std::to_string(types.size()) + ")";
    }
    for (std::size_t i = 0; i < types.size(); ++i) {
      auto problem = check_value(types[i], v.get_array()[i], where + "[" + std::to_string(i) + "]");
      if (!problem.empty()) return problem;
    }
    return "";
  }
  // A struct (its codec's name): an object of its fields.
  return v.is_object() ? "" : mismatch() + " (an object of its fields)";
}

}  // namespace

std::string check_arguments(const std::string& function, const std::string& signature,
                            const boost::json::array& arguments) {
  const auto open = signature.find('(');
  if (open == std::string::npos || signature.back() != ')') return "";  // not a signature this can read
  const auto types = split_types(std::string_view(signature).substr(open + 1, signature.size() - open - 2));
  if (arguments.size() != types.size()) {
    return "'" + function + "' takes " + std::to_string(types.size()) + " argument" + (types.size() == 1 ? "" : "s") +
           " (" + signature + "), got " + std::to_string(arguments.size());
  }
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (auto problem = check_value(types[i], arguments[i], ""); !problem.empty()) {
      return "argument " + std::to_string(i + 1) + " of '" + function + "': " + problem;
    }
  }
  return "";
}

}  // namespace ferry::codec_json
