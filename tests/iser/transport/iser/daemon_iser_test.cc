// The iser-target daemon serves iSER and iSCSI/TCP on one port (--transport any), and
// only iSER with --transport iser.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "tests/iser/target/raw_initiator.h"
#include "tests/iser/transport/iser/iser_test_initiator.h"

namespace iser::iser_transport {
namespace {

constexpr char kIqn[] = "iqn.2026-11.org.iser-csi:daemon-iser";

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class DaemonIserTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/iser-daemon-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    port_ = FreePort();
    std::string listen = "127.0.0.1:" + std::to_string(port_);
    std::string lun = dir_ + "/lun0.img";
    pid_ = ::fork();
    if (pid_ == 0) {
      execl(ISER_TARGET_BIN, ISER_TARGET_BIN, "--listen", listen.c_str(), "--transport", GetParam(),
            "--target", kIqn, "--lun", lun.c_str(), "--size", "16M", "--log-level", "warning",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_GT(pid_, 0);
    // Wait for the port.
    for (int i = 0; i < 200; ++i) {
      target::testing::RawInitiator probe(port_);
      if (probe.connected()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    loop_ = std::move(*EventLoop::Create());
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    ini_.reset();
    loop_->Stop();
    thread_.join();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    std::system(("rm -rf " + dir_).c_str());
  }

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::unique_ptr<testing::IserTestInitiator> ini_;
};

TEST_P(DaemonIserTest, IserSessionReadsWhatItWrote) {
  ini_ = std::make_unique<testing::IserTestInitiator>(loop_.get());
  ASSERT_TRUE(ini_->Connect(port_));
  ASSERT_TRUE(ini_->Login(kIqn));
  ini_->SendCommand(IserHeader::Control(), {0, 0, 0, 0, 0, 0}, 0, false, false);  // UA
  ASSERT_TRUE(ini_->Receive().has_value());
  for (size_t i = 0; i < 65536; ++i) ini_->buf()[i] = static_cast<uint8_t>(i * 3 + 7);
  IserHeader w;
  w.write_valid = true;
  w.write_stag = ini_->NewStag();
  w.write_base = ini_->base();
  ini_->SendCommand(w, {0x2a, 0, 0, 0, 0, 8, 0, 0, 128, 0}, 65536, false, true);
  auto wr = ini_->Receive();
  ASSERT_TRUE(wr.has_value());
  EXPECT_EQ(wr->bhs.byte(3), 0);
  IserHeader r;
  r.read_valid = true;
  r.read_stag = ini_->NewStag();
  r.read_base = ini_->base() + (1 << 20);
  ini_->SendCommand(r, {0x28, 0, 0, 0, 0, 8, 0, 0, 128, 0}, 65536, true, false);
  auto rd = ini_->Receive();
  ASSERT_TRUE(rd.has_value());
  EXPECT_EQ(rd->bhs.byte(3), 0);
  EXPECT_EQ(0, std::memcmp(ini_->buf() + (1 << 20), ini_->buf(), 65536));

  target::testing::RawInitiator tcp(port_);
  bool tcp_ok = tcp.connected() && tcp.Login(kIqn);
  EXPECT_EQ(tcp_ok, std::string(GetParam()) == "any");
}

uint64_t CpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(f);
    if (i == 15) {
      stime = std::stoull(f);
      break;
    }
  }
  return utime + stime;
}

// Regression: after an iSER connection ended, a CM event channel fd stayed readable with
// nothing behind it and the daemon's loop spun at 100% CPU. A TCP session (where the
// portal serves it) must leave nothing behind either.
TEST_P(DaemonIserTest, DaemonIsIdleAfterSessionsEnd) {
  auto expect_idle = [this](const char* after) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    uint64_t before = CpuTicks(pid_);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    uint64_t used = CpuTicks(pid_) - before;
    long hz = ::sysconf(_SC_CLK_TCK);
    EXPECT_LT(used, static_cast<uint64_t>(hz / 5))
        << "the idle daemon used " << used << " of " << hz << " ticks in a second after " << after;
  };
  ini_ = std::make_unique<testing::IserTestInitiator>(loop_.get());
  ASSERT_TRUE(ini_->Connect(port_));
  ASSERT_TRUE(ini_->Login(kIqn));
  ini_.reset();  // the connection goes away
  expect_idle("an iSER session");
  if (std::string(GetParam()) == "any") {
    {
      target::testing::RawInitiator tcp(port_);
      ASSERT_TRUE(tcp.connected() && tcp.Login(kIqn));
    }
    expect_idle("a TCP session");
  }
}

INSTANTIATE_TEST_SUITE_P(Transport, DaemonIserTest, ::testing::Values("any", "iser"));

}  // namespace
}  // namespace iser::iser_transport
