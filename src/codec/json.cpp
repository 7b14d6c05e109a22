#include "codec/json.hpp"

#include <msgpuck.h>

#include <boost/json.hpp>
#include <ferry/errors.hpp>
#include <string>

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
      out.commit(v >= 0 ? mp_encode_uint(out.reserve(9), static_cast<std::uint64_t>(v)) : mp_encode_int(out.reserve(9), v));
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

boost::json::value walk(const char*& p) {
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
      for (std::uint32_t i = 0; i < n; ++i) a.push_back(walk(p));
      return a;
    }
    case MP_MAP: {
      const std::uint32_t n = mp_decode_map(&p);
      boost::json::object o;
      for (std::uint32_t i = 0; i < n; ++i) {
        boost::json::value key = walk(p);
        std::string name = key.is_string() ? std::string(key.get_string()) : boost::json::serialize(key);
        o[name] = walk(p);
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

}  // namespace

boost::json::value to_json(detail::reader& in) {
  const char* check = in.pos;
  if (in.at_end() || mp_check(&check, in.end) != 0) {
    throw DecodeError("a MessagePack value", "malformed or truncated bytes");
  }
  return walk(in.pos);
}

}  // namespace ferry::codec_json
