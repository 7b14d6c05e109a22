// Fuzz target: the codec's decoding of every supported type, and MessagePack -> JSON (the HTTP edge).
//
// The first byte picks the type; the rest is decoded as one value of it. A decoder may only succeed or
// throw ferry::DecodeError, and never reads outside the input (ASan). When it succeeds, the value must
// survive a round trip: encoding it, decoding that again and encoding once more gives the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ferry/codec.hpp>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "codec/json.hpp"
#include "fuzz_target.hpp"

namespace fuzz_types {

enum class colour : std::uint8_t { red = 1, green = 2 };
enum class signed_enum : std::int64_t { low = -5, high = 1'000'000'000'000 };

struct point {
  double x;
  double y;
  std::string label;
  std::optional<std::int32_t> weight;
};
FERRY_STRUCT(point, x, y, label, weight)

struct shape {
  std::string name;
  std::vector<point> points;
  std::map<std::string, colour> colours;
  ferry::bytes raw;
};
FERRY_STRUCT(shape, name, points, colours, raw)

}  // namespace fuzz_types

namespace {

using namespace fuzz_types;

template <class T>
constexpr bool is_unordered_map = false;
template <class K, class V>
constexpr bool is_unordered_map<std::unordered_map<K, V>> = true;

bool same_bytes(const ferry::detail::buffer& a, const ferry::detail::buffer& b) {
  return a.size() == b.size() && std::equal(a.data(), a.data() + a.size(), b.data());
}

/// decode, then encode -> decode -> encode: the two encodings must be the same bytes.
template <class T>
void round_trip(const char* data, std::size_t size) {
  ferry::detail::reader in{data, data + size};
  T value;
  try {
    value = ferry::decode<T>(in);
  } catch (const ferry::DecodeError&) {
    return;  // what bad input must get
  }
  FUZZ_CHECK(in.pos >= data && in.pos <= data + size, "the decoder moved outside its input");
  ferry::detail::buffer first;
  ferry::encode(first, value);
  ferry::detail::reader again{first.view()};
  T copy;
  try {
    copy = ferry::decode<T>(again);
  } catch (const ferry::DecodeError& e) {
    fuzz_fail(std::string("a value's own encoding does not decode: ") + e.what());
  }
  FUZZ_CHECK(again.at_end(), "decoding a value's own encoding left bytes over");
  if constexpr (is_unordered_map<T>) {
    // (Its encoding follows its hash order, which may differ between two equal maps.)
    FUZZ_CHECK(copy == value, "a decoded value changed in a round trip");
  } else {
    ferry::detail::buffer second;
    ferry::encode(second, copy);
    FUZZ_CHECK(same_bytes(first, second), "a decoded value encodes differently after another round trip");
  }
}

/// MessagePack -> JSON, as the HTTP API shows results; JSON -> MessagePack -> JSON must be stable.
void json_round_trip(const char* data, std::size_t size) {
  ferry::detail::reader in{data, data + size};
  boost::json::value json;
  try {
    json = ferry::codec_json::to_json(in);
  } catch (const ferry::DecodeError&) {
    return;
  }
  FUZZ_CHECK(in.pos >= data && in.pos <= data + size, "to_json moved outside its input");
  ferry::detail::buffer packed;
  ferry::codec_json::to_msgpack(json, packed);
  ferry::detail::reader again{packed.view()};
  boost::json::value json_again;
  try {
    json_again = ferry::codec_json::to_json(again);
  } catch (const ferry::DecodeError& e) {
    fuzz_fail(std::string("JSON converted to MessagePack does not convert back: ") + e.what());
  }
  // (Compared as MessagePack, where NaN equals itself.)
  ferry::detail::buffer packed_again;
  ferry::codec_json::to_msgpack(json_again, packed_again);
  FUZZ_CHECK(same_bytes(packed, packed_again), "JSON -> MessagePack -> JSON changed the value");
}

/// One decoder the first byte can pick, with a sample value's encoding for the seed corpus.
struct decoder {
  const char* name;
  void (*decode)(const char*, std::size_t);
  std::string sample;
};

template <class T>
std::string encoded(const T& value) {
  ferry::detail::buffer out;
  ferry::encode(out, value);
  return std::string(out.data(), out.size());
}

template <class T>
decoder typed(const char* name, const T& sample) {
  return {name, round_trip<T>, encoded(sample)};
}

const point a_point{1.5, -2.25, "a", 7};
const shape a_shape{
    "triangle", {a_point, {0, 0, "", std::nullopt}}, {{"edge", colour::red}}, {std::byte{0}, std::byte{255}}};

const std::vector<decoder>& decoders() {
  static const std::vector<decoder> all = {
      typed("bool", true),
      typed("int8", std::int8_t{-100}),
      typed("uint8", std::uint8_t{200}),
      typed("int16", std::int16_t{-30000}),
      typed("uint16", std::uint16_t{60000}),
      typed("int32", std::int32_t{-2'000'000'000}),
      typed("uint32", std::uint32_t{4'000'000'000}),
      typed("int64", std::int64_t{-9'000'000'000'000'000'000}),
      typed("uint64", std::uint64_t{18'000'000'000'000'000'000u}),
      typed("float32", 3.5f),
      typed("float64", -1e300),
      typed("enum8", colour::green),
      typed("enum64", signed_enum::high),
      typed("string", std::string("hello, ferry")),
      typed("bytes", ferry::bytes{std::byte{1}, std::byte{2}, std::byte{3}}),
      typed("nil", std::monostate{}),
      typed("vector_int64", std::vector<std::int64_t>{1, -2, 300000}),
      typed("vector_string", std::vector<std::string>{"a", "bc"}),
      typed("vector_vector_float64", std::vector<std::vector<double>>{{1.0}, {}, {2.5, 3.5}}),
      typed("vector_uint8", std::vector<std::uint8_t>{0, 255}),
      typed("map_string_int64", std::map<std::string, std::int64_t>{{"x", 1}, {"y", -1}}),
      typed("map_int32_vector_bool", std::map<std::int32_t, std::vector<bool>>{{-1, {true, false}}}),
      typed("unordered_map_string_string", std::unordered_map<std::string, std::string>{{"k", "v"}}),
      typed("unordered_map_uint64_optional_int64",
            std::unordered_map<std::uint64_t, std::optional<std::int64_t>>{{1, 2}, {3, std::nullopt}}),
      typed("optional_string", std::optional<std::string>{"maybe"}),
      typed("optional_vector_int16", std::optional<std::vector<std::int16_t>>{std::vector<std::int16_t>{-1, 1}}),
      typed("pair_int64_string", std::pair<std::int64_t, std::string>{42, "answer"}),
      typed("tuple_empty", std::tuple<>{}),
      typed("tuple_bool_float64_bytes", std::tuple<bool, double, ferry::bytes>{false, 0.5, {std::byte{9}}}),
      typed("tuple_nested",
            std::tuple<std::string, std::vector<std::tuple<std::uint32_t, std::string>>, std::int64_t>{
                "t", {{1u, "one"}}, -7}),
      typed("struct_point", a_point),
      typed("struct_shape", a_shape),
      typed("vector_struct_shape", std::vector<shape>{a_shape}),
      typed("map_string_optional_struct",
            std::map<std::string, std::optional<point>>{{"p", a_point}, {"q", std::nullopt}}),
      {"json", json_round_trip, encoded(a_shape)},
  };
  return all;
}

}  // namespace

/// The seed corpus (replay_main.cpp --write-seeds): each decoder's selector byte and its sample's encoding.
std::vector<std::pair<std::string, std::string>> fuzz_seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  for (std::size_t i = 0; i < decoders().size(); ++i) {
    seeds.emplace_back(decoders()[i].name, static_cast<char>(i) + decoders()[i].sample);
  }
  return seeds;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& all = decoders();
  all[data[0] % all.size()].decode(reinterpret_cast<const char*>(data) + 1, size - 1);
  return 0;
}
