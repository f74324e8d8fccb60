#include "node/exposure/nbd/nbd_exposure.h"

#include <endian.h>
#include <fcntl.h>
#include <linux/nbd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "iser/base/unique_fd.h"
#include "node/exposure/memory_block_backend.h"
#include "node/exposure/nbd/nbd_server.h"
#include "tests/node/async_backend.h"

namespace iser::node {
namespace {

// The test plays the kernel's nbd driver on the other end of a socketpair.
class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = std::move(*MemoryBlockBackend::Create(1 << 20, 4096));
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_.Reset(sv[0]);
    server_ = std::make_unique<NbdServer>(*backend_, UniqueFd(sv[1]));
    server_->Start();
  }

  void Send(uint32_t type, uint64_t handle, uint64_t from, uint32_t len,
            const std::vector<uint8_t>& payload = {}) {
    nbd_request req;
    req.magic = htobe32(NBD_REQUEST_MAGIC);
    req.type = htobe32(type);
    std::memcpy(req.handle, &handle, 8);
    req.from = htobe64(from);
    req.len = htobe32(len);
    ASSERT_EQ(::write(client_.get(), &req, sizeof(req)), static_cast<ssize_t>(sizeof(req)));
    if (!payload.empty()) {
      ASSERT_EQ(::write(client_.get(), payload.data(), payload.size()),
                static_cast<ssize_t>(payload.size()));
    }
  }

  // Returns the error field; checks the handle; reads `data_len` bytes of data into `data`.
  uint32_t Receive(uint64_t handle, std::vector<uint8_t>* data = nullptr, size_t data_len = 0) {
    nbd_reply reply;
    EXPECT_EQ(::recv(client_.get(), &reply, sizeof(reply), MSG_WAITALL),
              static_cast<ssize_t>(sizeof(reply)));
    EXPECT_EQ(be32toh(reply.magic), static_cast<uint32_t>(NBD_REPLY_MAGIC));
    uint64_t h;
    std::memcpy(&h, reply.handle, 8);
    EXPECT_EQ(h, handle);
    uint32_t error = be32toh(reply.error);
    if (error == 0 && data != nullptr) {
      data->resize(data_len);
      EXPECT_EQ(::recv(client_.get(), data->data(), data_len, MSG_WAITALL),
                static_cast<ssize_t>(data_len));
    }
    return error;
  }

  std::unique_ptr<MemoryBlockBackend> backend_;
  UniqueFd client_;
  std::unique_ptr<NbdServer> server_;
};

TEST_F(NbdServerTest, WriteReadFlushTrimDisconnect) {
  std::vector<uint8_t> data(8192);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  Send(NBD_CMD_WRITE, 1, 4096, 8192, data);
  EXPECT_EQ(Receive(1), 0u);
  std::vector<uint8_t> back;
  Send(NBD_CMD_READ, 2, 4096, 8192);
  EXPECT_EQ(Receive(2, &back, 8192), 0u);
  EXPECT_EQ(back, data);
  Send(NBD_CMD_FLUSH, 3, 0, 0);
  EXPECT_EQ(Receive(3), 0u);
  EXPECT_EQ(backend_->flushes(), 1u);
  Send(NBD_CMD_TRIM, 4, 4096, 4096);
  EXPECT_EQ(Receive(4), 0u);
  EXPECT_EQ(backend_->discarded_bytes(), 4096u);
  Send(NBD_CMD_READ, 5, (1 << 20) - 4096, 8192);  // past the end
  EXPECT_EQ(Receive(5), static_cast<uint32_t>(EINVAL));
  Send(NBD_CMD_DISC, 6, 0, 0);
  server_->Wait();
  EXPECT_EQ(server_->requests(), 6u);
}

TEST_F(NbdServerTest, BadMagicClosesConnection) {
  uint8_t junk[28] = {1, 2, 3};
  ASSERT_EQ(::write(client_.get(), junk, sizeof(junk)), 28);
  server_->Wait();
  char c;
  EXPECT_EQ(::recv(client_.get(), &c, 1, 0), 0);  // EOF
}

TEST(NbdServerAsyncTest, PipelinedRequestsAllAnswered) {
  auto memory = std::move(*MemoryBlockBackend::Create(1 << 20, 4096));
  AsyncBackend backend(*memory);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd client(sv[0]);
  NbdServer server(backend, UniqueFd(sv[1]));
  server.Start();
  constexpr int kRequests = 64;
  for (uint64_t i = 0; i < kRequests; ++i) {
    nbd_request req;
    req.magic = htobe32(NBD_REQUEST_MAGIC);
    req.type = htobe32(NBD_CMD_READ);
    std::memcpy(req.handle, &i, 8);
    req.from = htobe64(i * 4096);
    req.len = htobe32(4096);
    ASSERT_EQ(::write(client.get(), &req, sizeof(req)), static_cast<ssize_t>(sizeof(req)));
  }
  std::vector<bool> seen(kRequests, false);
  std::vector<uint8_t> data(4096);
  for (int i = 0; i < kRequests; ++i) {
    nbd_reply reply;
    ASSERT_EQ(::recv(client.get(), &reply, sizeof(reply), MSG_WAITALL),
              static_cast<ssize_t>(sizeof(reply)));
    ASSERT_EQ(be32toh(reply.magic), static_cast<uint32_t>(NBD_REPLY_MAGIC));
    ASSERT_EQ(be32toh(reply.error), 0u);
    uint64_t h;
    std::memcpy(&h, reply.handle, 8);
    ASSERT_LT(h, static_cast<uint64_t>(kRequests));
    EXPECT_FALSE(seen[h]) << "handle " << h << " answered twice";
    seen[h] = true;
    ASSERT_EQ(::recv(client.get(), data.data(), data.size(), MSG_WAITALL), 4096);
  }
  EXPECT_GE(backend.max_outstanding.load(), 2);
  server.Stop();
}

TEST(NbdExposureTest, ExposeWriteReadDetach) {
  absl::Status available = NbdAvailable();
  if (!available.ok()) GTEST_SKIP() << available.message();
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto backend = std::move(*MemoryBlockBackend::Create(64 << 20, 4096));
  NbdExposure exposure;
  auto dev = exposure.Expose(*backend, {.name = "nbd-test"});
  ASSERT_TRUE(dev.ok()) << dev.status();
  {
    UniqueFd fd(::open((*dev)->device_path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    ASSERT_TRUE(fd);
    void* p = nullptr;
    ASSERT_EQ(::posix_memalign(&p, 4096, 65536), 0);
    std::memset(p, 0x3c, 65536);
    EXPECT_EQ(::pwrite(fd.get(), p, 65536, 1 << 20), 65536);
    EXPECT_EQ(std::memcmp(backend->data() + (1 << 20), p, 65536), 0);
    std::memset(p, 0, 65536);
    EXPECT_EQ(::pread(fd.get(), p, 65536, 1 << 20), 65536);
    EXPECT_EQ(static_cast<uint8_t*>(p)[100], 0x3c);
    std::free(p);
  }
  EXPECT_TRUE((*dev)->Detach().ok());
}

}  // namespace
}  // namespace iser::node
