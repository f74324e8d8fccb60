// GET LBA STATUS over a sparse file: SEEK_DATA / SEEK_HOLE rounded to blocks. A block that
// holds any data counts as mapped; only blocks wholly inside a hole are deallocated.
#ifndef ISER_STORE_LBA_STATUS_H_
#define ISER_STORE_LBA_STATUS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "iser/store/block_store.h"

namespace iser::store {

// The run of blocks with one provisioning state that starts at `offset` (block aligned)
// and ends no later than `end`. Requires offset < end.
absl::StatusOr<LbaRun> ProbeLbaRun(int fd, uint64_t offset, uint64_t end, uint32_t block_size);

}  // namespace iser::store

#endif  // ISER_STORE_LBA_STATUS_H_
