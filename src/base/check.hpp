// FERRY_CHECK(condition, message): a broken invariant is a bug; abort with where and why.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FERRY_CHECK(condition, message)                                                                           \
  do {                                                                                                            \
    if (!(condition)) {                                                                                           \
      std::fprintf(stderr, "ferry: internal error at %s:%d: %s (%s)\n", __FILE__, __LINE__, message, #condition); \
      std::abort();                                                                                               \
    }                                                                                                             \
  } while (false)
