/// ferry/ferry.hpp: everything a ferry program needs. See README.md for a tour.
#pragma once

#include <ferry/app.hpp>
#include <ferry/async.hpp>
#include <ferry/codec.hpp>
#include <ferry/errors.hpp>
#include <ferry/function.hpp>
#include <ferry/future.hpp>
#include <ferry/options.hpp>
#include <ferry/task.hpp>
#include <ferry/version.hpp>
