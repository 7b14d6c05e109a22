#include <ferry/version.hpp>

namespace ferry {

const char* version() noexcept { return FERRY_VERSION; }

}  // namespace ferry
