/// ferry/signature.hpp: how a function's signature is named, and how a caller's is checked against the one
/// deployed.
///
/// A signature is written with the codec's names (ferry/codec.hpp): `int64(string,vector<int64>)`, an async
/// body's result by its value (`Task<int64>` is `int64`, a tail call's `Future<int64>` too), `void` for nothing,
/// structs by their qualified names (`shop::Receipt(shop::Order)`). Beside it, the fields of every struct it
/// mentions, by name and type (`shop::Order{id:int64,items:vector<string>}`, `;`-separated): two programs agree
/// on a function only when both agree. Function::signature() returns the first; `ferry apps` lists signatures.
///
/// The check: Function<R(A...)>::from_name asks the server for the deployed function's signature and throws
/// ferry::SignatureMismatchError, naming both (and, when only a struct's fields differ, that struct's), before
/// anything runs; UnknownFunctionError when nothing of that name is deployed. A program that declares the
/// function itself (App::function) is not checked: the server runs its own binary's body. Naming a signature is
/// thread-safe (what it collects is thread-local).
#pragma once

#include <ferry/codec.hpp>
#include <ferry/task.hpp>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

namespace ferry::detail {

template <class T>
std::string type_name() {
  if constexpr (std::is_void_v<T>) {
    return "void";
  } else {
    return codec<T>::name();
  }
}

/// How the server names a function's signature, to check callers against it: `int64(string,vector<int64>)`
/// (structs by their qualified names, `shop::Receipt(shop::Order)`), and the fields of every struct it mentions,
/// by name: `shop::Order{id:int64,items:vector<string>};shop::Receipt{total:float64}`.
struct signature_description {
  std::string signature;
  std::string structs;
};
template <class R, class... A>
signature_description describe_signature() {
  struct_collection collection;
  struct collecting {
    struct_collection* previous;
    ~collecting() { collecting_structs = previous; }
  } scope{std::exchange(collecting_structs, &collection)};
  signature_description d;
  d.signature = type_name<R>() + "(";
  ((d.signature += codec<A>::name() + ","), ...);
  if (sizeof...(A) > 0) d.signature.pop_back();
  d.signature += ")";
  for (const auto& [name, fields] : collection.fields) d.structs += (d.structs.empty() ? "" : ";") + name + fields;
  return d;
}

/// The signature of deployed function `app.function`; throws UnknownFunctionError when there is none.
signature_description deployed_signature(const std::string& app, const std::string& function,
                                         const std::source_location& site);
Task<signature_description> deployed_signature_async(std::string app, std::string function);
/// Throws SignatureMismatchError, showing both (and, when only a struct's fields differ, that struct's), when
/// they differ.
void check_signature(const std::string& app, const std::string& function, const signature_description& deployed,
                     const signature_description& expected);

}  // namespace ferry::detail
