# Homebrew formula for chat: builds the `chat` binary from the release source tarball with cargo.
#
# Not in homebrew-core and no tap is published: copy this file into a tap of your own (see
# docs/install.md). The url is where the release tarball is to be published: the project has no
# public home yet (chat.example.org is a placeholder) and no release tarball has been published.
# packaging/homebrew/release.sh makes the tarball (`git archive`) and rewrites the url and sha256
# lines below for it; run it on the release tag and publish that very file at the url.
# packaging/homebrew/test-formula.sh checks this formula without Homebrew (CI).
class Chat < Formula
  desc "Self-hosted real-time chat with browser video calls, in one binary"
  homepage "https://chat.example.org/"
  # release.sh: git archive of 34e369d (not a release tag)
  url "https://chat.example.org/releases/chat-0.1.0.tar.gz"
  sha256 "7ad9a5c1fc569dcc316057e5c1beb8ee1b0e8b7454207facc7d7dfce34e58388"
  license any_of: ["MIT", "Apache-2.0"]

  depends_on "rust" => :build

  def install
    # Only the server (the root package); the load tool is a separate workspace member.
    system "cargo", "install", "--bin", "chat", *std_cargo_args

    # The default configuration in pkgetc (HOMEBREW_PREFIX/etc/chat): the commented example the
    # binary prints, with the database under Homebrew's var. An edited file is kept on upgrades
    # (a changed default lands next to it as chat.toml.default).
    (buildpath/"chat.toml").write Utils.safe_popen_read(bin/"chat", "config", "example")
    inreplace "chat.toml", 'data_dir = "chat-data"', "data_dir = \"#{var}/chat\""
    pkgetc.install "chat.toml"
  end

  def post_install
    (var/"chat").mkpath
  end

  def caveats
    <<~EOS
      The configuration is #{pkgetc}/chat.toml and the data is in #{var}/chat.
      chat listens on http://127.0.0.1:8080/ (loopback only). Set server_name before the first
      sign-up; to serve other machines set listen, [turn] listen and HTTPS (tls_cert/tls_key or
      tls_self_signed): browsers allow calls only over HTTPS. Check changes with
        chat config check #{pkgetc}/chat.toml
    EOS
  end

  service do
    # etc/"chat" is pkgetc, which a service block cannot call (it delegates etc, var, opt_bin, ...).
    run [opt_bin/"chat", "serve", "--config", etc/"chat/chat.toml"]
    keep_alive true
    working_dir var/"chat"
    environment_variables NO_COLOR: "1"
    log_path var/"log/chat.log"
    error_log_path var/"log/chat.log"
  end

  test do
    assert_equal "chat #{version}", shell_output("#{bin}/chat --version").strip

    # The printed example is a valid configuration, and so is the one `install` wrote.
    (testpath/"chat.toml").write shell_output("#{bin}/chat config example")
    assert_match "configuration OK", shell_output("#{bin}/chat config check #{testpath}/chat.toml 2>&1")
    assert_match "configuration OK", shell_output("#{bin}/chat config check #{pkgetc}/chat.toml 2>&1")

    # Serve on loopback: a free web port, TURN on any free port, no metrics listener (its
    # default 127.0.0.1:9187 is fixed), the database under testpath.
    port = free_port
    log = testpath/"serve.log"
    pid = spawn bin/"chat", "serve", "--config", testpath/"chat.toml", "--listen", "127.0.0.1:#{port}",
                "--data-dir", testpath/"data", "--turn-listen", "127.0.0.1:0", "--metrics-listen", "off",
                [:out, :err] => log.to_s
    begin
      healthz = "http://127.0.0.1:#{port}/healthz"
      up = false
      100.times do
        break if (up = quiet_system("curl", "-fs", "-o", File::NULL, healthz))

        if Process.wait(pid, Process::WNOHANG)
          pid = nil # it exited: a bad flag or setting, a port in use
          break
        end
        sleep 0.2
      end
      assert up, "chat serve did not answer #{healthz}:\n#{log.read}"
      assert_equal "ok", shell_output("curl -fsS #{healthz}")
      assert_match "chat is ready at http://127.0.0.1:#{port}/", log.read

      Process.kill("TERM", pid)
      _, status = Process.wait2(pid)
      pid = nil
      assert_predicate status, :success?, "chat serve did not stop cleanly on TERM:\n#{log.read}"
    ensure
      if pid
        Process.kill("KILL", pid)
        Process.wait(pid)
      end
    end
    assert_path_exists testpath/"data/chat.redb"
  end
end
