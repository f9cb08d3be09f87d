# Python 2.7: runs `wstest -m fuzzingclient -s SPEC`, but also writes the
# report for the cases finished so far when stopped by SIGTERM/SIGINT.
# Plain wstest writes its reports only after the last case, so when run.sh's
# overall time limit stops a hung run there would be nothing to look at.
import sys

from twisted.internet import reactor
from autobahntestsuite import fuzzing, wstest

_factories = []
_orig_init = fuzzing.FuzzingClientFactory.__init__
_orig_reports = fuzzing.FuzzingClientFactory.createReports


def _init(self, *args, **kwargs):
    _factories.append(self)
    self._reports_written = False
    _orig_init(self, *args, **kwargs)


def _create_reports(self):
    self._reports_written = True
    _orig_reports(self)


def _on_shutdown():
    for factory in _factories:
        if not factory._reports_written:
            sys.stdout.write("wstest stopped early: writing partial report\n")
            _create_reports(factory)


fuzzing.FuzzingClientFactory.__init__ = _init
fuzzing.FuzzingClientFactory.createReports = _create_reports
reactor.addSystemEventTrigger("before", "shutdown", _on_shutdown)

if __name__ == "__main__":
    sys.argv = ["wstest", "-m", "fuzzingclient", "-s", sys.argv[1]]
    wstest.run()
