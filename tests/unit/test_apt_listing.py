"""apt-get install --print-uris read as the plan of what apt would install (piuparts.layers.parse_listing).

The outputs are apt's own (bookworm's apt 2.6), cut to a few packages.
"""

from piuparts import aptplan, layers

LISTING = """\
Reading package lists...
Building dependency tree...
The following additional packages will be installed:
  libssl3 python3-oslo.config python3-six
The following NEW packages will be installed:
  fx libssl3 python3-oslo.config python3-six
0 upgraded, 4 newly installed, 0 to remove and 0 not upgraded.
Need to get 2161 kB/2162 kB of archives.
After this operation, 6110 kB of additional disk space will be used.
'file:/var/cache/piuparts-debs/fx.deb' fx_1%3a1.0_all.deb 720 \n\
'http://mirror.invalid/debian/pool/main/o/openssl/libssl3_3.0.20-1%7edeb12u2_amd64.deb' libssl3_3.0.20-1~deb12u2_amd64.deb 2036016 MD5Sum:4efab63a42e193c6107a3e1d1c46eaa4
'http://mirror.invalid/debian/pool/main/p/python-oslo.config/python3-oslo.config_9.0.0-3_all.deb' python3-oslo.config_1%3a9.0.0-3_all.deb 107756 MD5Sum:0327dff7d8c960a9e7b643631a2544a4
'http://mirror.invalid/debian/pool/main/s/six/python3-six_1.16.0-4_all.deb' python3-six_1.16.0-4_all.deb 17516 MD5Sum:0ead10b921294fee78c3fbd4a3575dc4
"""


def test_every_package_with_its_version_architecture_and_checksum():
    plan = aptplan.parse_listing(LISTING, "amd64")
    assert plan is not None
    assert plan.items == ["fx=1:1.0:all", "libssl3=3.0.20-1~deb12u2:amd64", "python3-oslo.config=1:9.0.0-3:all",
                          "python3-six=1.16.0-4:all"]
    # the local .deb has no checksum in apt's listing: it is not part of the key material
    assert plan.checksums == ["libssl3_3.0.20-1~deb12u2_amd64.deb 2036016 MD5Sum:4efab63a42e193c6107a3e1d1c46eaa4",
                              "python3-oslo.config_1%3a9.0.0-3_all.deb 107756 MD5Sum:0327dff7d8c960a9e7b643631a2544a4",
                              "python3-six_1.16.0-4_all.deb 17516 MD5Sum:0ead10b921294fee78c3fbd4a3575dc4"]
    assert plan.listed is not None and plan.listed["fx=1:1.0:all"][0] == "file:/var/cache/piuparts-debs/fx.deb"


def test_a_package_of_another_architecture_is_named_as_apt_names_it():
    plan = aptplan.parse_listing(LISTING, "i386")
    assert plan is not None
    assert "libssl3:amd64=3.0.20-1~deb12u2:amd64" in plan.items
    assert "python3-six=1.16.0-4:all" in plan.items


def test_a_listing_short_of_apts_count_is_not_a_plan():
    # a .deb already in the instance's archives is counted but not listed: --simulate must answer instead
    short = LISTING.replace("0 upgraded, 4 newly installed", "1 upgraded, 4 newly installed")
    assert aptplan.parse_listing(short, "amd64") is None
    assert aptplan.parse_listing("E: Unable to locate package nothere\n", "amd64") is None


def test_downgrades_and_reinstalls_count():
    text = LISTING.replace("0 upgraded, 4 newly installed, 0 to remove",
                           "0 upgraded, 2 newly installed, 1 reinstalled, 1 downgraded, 0 to remove")
    plan = aptplan.parse_listing(text, "amd64")
    assert plan is not None and len(plan.items) == 4


def test_nothing_to_install_is_an_empty_plan():
    text = "Reading package lists...\npython3-six is already the newest version (1.16.0-4).\n" \
           "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
    plan = aptplan.parse_listing(text, "amd64")
    assert plan is not None and plan.items == [] and plan.checksums == []


def test_an_answer_remembers_what_its_test_fetches(tmp_path):
    layer = tmp_path / "layers" / "abc"
    (layer / "tree").mkdir(parents=True)
    (layer / "dependencies").write_text("python3-six=1.16.0-4:all\n")
    plan = aptplan.parse_listing(LISTING, "amd64")
    assert plan is not None and plan.listed is not None
    fetch = [plan.listed["fx=1:1.0:all"], plan.listed["python3-oslo.config=1:9.0.0-3:all"]]
    layers._remember(tmp_path, "key1", "abc", fetch)
    stack, dependencies, remembered = layers._cached_layer(tmp_path, "key1")
    assert stack == [layer / "tree"] and dependencies == ["python3-six=1.16.0-4:all"]
    # the local .deb (apt reads it in place, and it has no checksum) is not kept
    assert remembered == [plan.listed["python3-oslo.config=1:9.0.0-3:all"]]
    layers._remember(tmp_path, "key2", "abc", [])
    assert layers._cached_layer(tmp_path, "key2")[2] == []  # known: nothing to fetch
    layers._remember(tmp_path, "key3", "abc")
    assert layers._cached_layer(tmp_path, "key3")[2] is None  # not known: the test asks apt
    layers._remember(tmp_path, "key4", layers.NO_LAYER)
    assert layers._cached_layer(tmp_path, "key4") == ([], [], None)
