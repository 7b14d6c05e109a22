/// ferry/ferry.hpp: everything a ferry program needs. See README.md for a tour.
///
///   ferry/app.hpp            App: declaring functions, app.main
///   ferry/function.hpp       Function<Sig>: remote, remote.aio, local, the direct call, from_name
///   ferry/map.hpp            map, map.outcomes, starmap, for_each, reduce; MapOptions, Outcome
///   ferry/spawn.hpp          spawn: durable calls; SpawnOptions
///   ferry/function_call.hpp  FunctionCall<R>: a spawned call's get, cancel, from_id
///   ferry/future.hpp         Future<T>, CallTask<T>: calls as values, passed as arguments
///   ferry/async.hpp          gather, create_task and StartedTask, run, sleep, cancelled, progress
///   ferry/task.hpp           Task<T>, Asio's awaitable
///   ferry/signature.hpp      how signatures are named and checked
///   ferry/codec.hpp          codec<T>: the types that travel (codec_std.hpp, struct.hpp: FERRY_STRUCT)
///   ferry/options.hpp        FunctionOptions, Retries
///   ferry/errors.hpp         the exceptions
///   ferry/version.hpp        version()
/// ferry/detail/ holds what these need and programs do not use directly (but a codec<T> specialization takes
/// a detail::buffer and a detail::reader: ferry/codec.hpp).
#pragma once

#include <ferry/app.hpp>
#include <ferry/async.hpp>
#include <ferry/codec.hpp>
#include <ferry/errors.hpp>
#include <ferry/function.hpp>
#include <ferry/function_call.hpp>
#include <ferry/future.hpp>
#include <ferry/map.hpp>
#include <ferry/options.hpp>
#include <ferry/signature.hpp>
#include <ferry/spawn.hpp>
#include <ferry/struct.hpp>
#include <ferry/task.hpp>
#include <ferry/version.hpp>
