// Handing open file descriptors to another process over a Unix socket (SCM_RIGHTS):
// how an attachment's kernel-facing descriptors (the /dev/fuse connection, the open
// loop device) move to a successor process so the block device outlives the process
// that made it. The receiver gets new descriptors for the same open files.
#ifndef ISER_BASE_FD_PASSING_H_
#define ISER_BASE_FD_PASSING_H_

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iser/base/unique_fd.h"

namespace iser {

// At most this many descriptors per message (the kernel's SCM_MAX_FD is 253).
inline constexpr size_t kMaxPassedFds = 16;

// Sends `payload` (1..4096 bytes: it says what the descriptors are) with `fds` on the
// connected Unix socket `sock`, in one message. Blocks until sent.
absl::Status SendFds(int sock, absl::string_view payload, std::span<const int> fds);

struct ReceivedFds {
  std::string payload;
  std::vector<UniqueFd> fds;  // close-on-exec
};

// Receives one message sent by SendFds. Fails (closing whatever arrived) on a truncated
// payload or descriptor list, and on end of stream.
absl::StatusOr<ReceivedFds> ReceiveFds(int sock);

}  // namespace iser

#endif  // ISER_BASE_FD_PASSING_H_
