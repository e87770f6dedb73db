# ruff: noqa: E501 — Central's fixtures are kept as Central wrote them.
"""ODK Central's own test fixtures, as data: forms and instances from ``test/data/xml.js`` and the files
Central's unit tests expect from them (``test/unit/data/briefcase.js`` for the CSV zip,
``test/unit/data/odata.js`` for OData), in getodk/central-backend at commit
4f5943d13dd775fcecd2e21f9b8957db885d1ca3.

Only data is reproduced here (XML, instance values, expected text); the tests in
``tests/test_central_parity.py`` publish the forms and send the instances through Sarhad's real paths.

Changes made to make Central's unit-test forms publishable (Central's unit tests parse them leniently,
a real server does not): the leading blank line before ``<?xml ...?>`` is dropped, and the ``orx``
prefix the forms use is declared on ``<h:html>`` where they forgot to. Nothing else in a form changes.
"""

from __future__ import annotations

ORX_NS = "http://openrosa.org/xforms"


def publishable(xml: str) -> str:
    """A unit-test form as a server must see it: no whitespace before the XML declaration, and the
    ``orx:`` prefix declared when the form uses it."""
    text = xml.strip()
    if "orx:" in text and "xmlns:orx=" not in text:
        text = text.replace("<h:html ", f'<h:html xmlns:orx="{ORX_NS}" ', 1)
    return text


def instance(form_id: str, instance_id: str, data: str) -> str:
    """xml.js's ``instance()``: the envelope around an instance's data."""
    return f'<data id="{form_id}"><meta><instanceID>{instance_id}</instanceID></meta>{data}</data>'


def full_instance(form_id: str, version: str, instance_id: str, data: str) -> str:
    """xml.js's ``fullInstance()``: with a form version and the orx namespace on the meta block."""
    return (
        f'<data id="{form_id}" version="{version}"><orx:meta xmlns:orx="{ORX_NS}"><orx:instanceID>'
        f"{instance_id}</orx:instanceID></orx:meta>{data}</data>"
    )


# ---- forms -------------------------------------------------------------------------------------------

# briefcase.js
MYTESTFORM = """
      <?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="mytestform">
                <name/>
                <age/>
                <hometown/>
              </data>
            </instance>
            <bind nodeset="/data/name" type="string"/>
            <bind type="integer" nodeset="/data/age"/>
            <bind nodeset="/data/hometown" type="select1"/>
          </model>
        </h:head>
      </h:html>"""

# briefcase.js
GEOPOINT_FORM = """
      <?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="mytestform">
                <name/>
                <age/>
                <location/>
              </data>
            </instance>
            <bind nodeset="/data/name" type="string"/>
            <bind type="integer" nodeset="/data/age"/>
            <bind nodeset="/data/location" type="geopoint"/>
          </model>
        </h:head>
      </h:html>"""

# briefcase.js
STRUCTUREDFORM = """
      <?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="structuredform">
                <orx:meta>
                  <orx:instanceID/>
                </orx:meta>
                <name/>
                <home>
                  <type/>
                  <address>
                    <street/>
                    <city/>
                  </address>
                </home>
              </data>
            </instance>
            <bind nodeset="/data/orx:meta/orx:instanceID" preload="uid" type="string"/>
            <bind nodeset="/data/name" type="string"/>
            <bind nodeset="/data/home/type" type="select1"/>
            <bind nodeset="/data/home/address/street" type="string"/>
            <bind nodeset="/data/home/address/city" type="string"/>
          </model>
        </h:head>
      </h:html>"""

# briefcase.js
SINGLEREPEAT = """
      <?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="singlerepeat">
                <orx:meta>
                  <orx:instanceID/>
                </orx:meta>
                <name/>
                <age/>
                <children>
                  <child>
                    <name/>
                    <age/>
                  </child>
                </children>
              </data>
            </instance>
            <bind nodeset="/data/orx:meta/orx:instanceID" preload="uid" type="string"/>
            <bind nodeset="/data/name" type="string"/>
            <bind nodeset="/data/age" type="integer"/>
            <bind nodeset="/data/children/child/name" type="string"/>
            <bind nodeset="/data/children/child/age" type="integer"/>
          </model>
        </h:head>
        <h:body>
          <input ref="/data/name">
            <label>What is your name?</label>
          </input>
          <input ref="/data/age">
            <label>What is your age?</label>
          </input>
          <group ref="/data/children">
            <label>Child</label>
            <repeat nodeset="/data/children/child">
              <input ref="/data/children/child/name">
                <label>What is the child's name?</label>
              </input>
              <input ref="/data/children/child/age">
                <label>What is the child's age?</label>
              </input>
            </repeat>
          </group>
        </h:body>
      </h:html>"""

# briefcase.js
MULTIREPEAT = """
      <?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="multirepeat">
                <orx:meta>
                  <orx:instanceID/>
                </orx:meta>
                <name/>
                <age/>
                <children>
                  <child>
                    <name/>
                    <age/>
                    <toy>
                      <name/>
                    </toy>
                  </child>
                </children>
              </data>
            </instance>
            <bind nodeset="/data/meta/instanceID" preload="uid" type="string"/>
            <bind nodeset="/data/name" type="string"/>
            <bind nodeset="/data/age" type="integer"/>
            <bind nodeset="/data/children/child/name" type="string"/>
            <bind nodeset="/data/children/child/age" type="integer"/>
            <bind nodeset="/data/children/child/toy/name" type="string"/>
          </model>
        </h:head>
        <h:body>
          <input ref="/data/name">
            <label>What is your name?</label>
          </input>
          <input ref="/data/age">
            <label>What is your age?</label>
          </input>
          <group ref="/data/children/child">
            <label>Child</label>
            <repeat nodeset="/data/children/child">
              <input ref="/data/children/child/name">
                <label>What is the child's name?</label>
              </input>
              <input ref="/data/children/child/age">
                <label>What is the child's age?</label>
              </input>
              <group ref="/data/children/child/toy">
                <label>Child</label>
                <repeat nodeset="/data/children/child/toy">
                  <input ref="/data/children/child/toy/name">
                    <label>What is the toy's name?</label>
                  </input>
                </repeat>
              </group>
            </repeat>
          </group>
        </h:body>
      </h:html>"""

# briefcase.js
PATHPREFIX = """<?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="form">
                <name/>
                <children jr:template="">
                  <name/>
                </children>
                <children-status/>
              </data>
            </instance>
            <bind nodeset="/data/name" type="string"/>
            <bind nodeset="/data/children/name" type="string"/>
            <bind nodeset="/data/children-status" type="select1"/>
          </model>
        </h:head>
        <h:body>
          <repeat nodeset="/data/children">
            <input ref="/data/children/name">
              <label>What is the child's name?</label>
            </input>
          </repeat>
        </h:body>
      </h:html>"""

# briefcase.js
ALL_DATA_TYPES = """
<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml">
  <h:head>
    <h:title>All data types</h:title>
    <model>
      <instance>
        <data id="all-data-types">
          <some_string/>
          <some_int/>
          <some_decimal/>
          <some_date/>
          <some_time/>
          <some_date_time/>
          <some_geopoint/>
          <some_geotrace/>
          <some_geoshape/>
          <some_barcode/>
          <meta>
            <instanceID/>
          </meta>
        </data>
      </instance>
      <bind nodeset="/data/some_string" type="string"/>
      <bind nodeset="/data/some_int" type="int"/>
      <bind nodeset="/data/some_decimal" type="decimal"/>
      <bind nodeset="/data/some_date" type="date"/>
      <bind nodeset="/data/some_time" type="time"/>
      <bind nodeset="/data/some_date_time" type="dateTime"/>
      <bind nodeset="/data/some_geopoint" type="geopoint"/>
      <bind nodeset="/data/some_geotrace" type="geotrace"/>
      <bind nodeset="/data/some_geoshape" type="geoshape"/>
      <bind nodeset="/data/some_barcode" type="barcode"/>
      <bind calculate="concat('uuid:', uuid())" nodeset="/data/meta/instanceID" readonly="true()" type="string"/>
    </model>
  </h:head>
  <h:body>
    <input ref="some_string"/>
    <input ref="some_int"/>
    <input ref="some_decimal"/>
    <input ref="some_date"/>
    <input ref="some_time"/>
    <input ref="some_date_time"/>
    <input ref="some_geopoint"/>
    <input ref="some_geotrace"/>
    <input ref="some_geoshape"/>
    <input ref="some_barcode"/>
  </h:body>
</h:html>"""

# briefcase.js
NESTED_REPEATS = """
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <h:title>Nested repeats</h:title>
    <model>
      <instance>
        <data id="nested-repeats">
          <meta>
            <instanceID/>
          </meta>
          <g1 jr:template="">
            <t1/>
            <g2 jr:template="">
              <t2/>
              <g3 jr:template="">
                <t3/>
              </g3>
            </g2>
          </g1>
        </data>
      </instance>
      <itext>
        <translation lang="English">
          <text id="/data/g1:label">
            <value></value>
          </text>
          <text id="/data/g1/g2:label">
            <value></value>
          </text>
          <text id="/data/g1/g2/g3:label">
            <value></value>
          </text>
        </translation>
      </itext>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" calculate="concat('uuid:', uuid())"/>
      <bind nodeset="/data/g1/t1" type="string"/>
      <bind nodeset="/data/g1/g2/t2" type="string"/>
      <bind nodeset="/data/g1/g2/g3/t3" type="string"/>
    </model>
  </h:head>
  <h:body>
    <group>
      <label ref="jr:itext('/data/g1:label')"/>
      <repeat nodeset="/data/g1">
        <input ref="/data/g1/t1">
        </input>
        <group>
          <label ref="jr:itext('/data/g1/g2:label')"/>
          <repeat nodeset="/data/g1/g2">
            <input ref="/data/g1/g2/t2">
            </input>
            <group>
              <label ref="jr:itext('/data/g1/g2/g3:label')"/>
              <repeat nodeset="/data/g1/g2/g3">
                <input ref="/data/g1/g2/g3/t3">
                </input>
              </repeat>
            </group>
          </repeat>
        </group>
      </repeat>
    </group>
  </h:body>
</h:html>"""

# briefcase.js
AMBIGUOUS = """
      <?xml version="1.0"?>
      <h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
        <h:head>
          <model>
            <instance>
              <data id="ambiguous">
                <orx:meta>
                  <orx:instanceID/>
                </orx:meta>
                <name/>
                <jobs>
                  <entry><name/></entry>
                </jobs>
                <friends>
                  <entry><name/></entry>
                </friends>
              </data>
            </instance>
            <bind nodeset="/data/meta/instanceID" preload="uid" type="string"/>
            <bind nodeset="/data/name" type="string"/>
            <bind nodeset="/data/jobs/entry/name" type="string"/>
            <bind nodeset="/data/friends/entry/name" type="string"/>
          </model>
        </h:head>
        <h:body>
          <input ref="/data/name">
            <label>What is your name?</label>
          </input>
          <group ref="/data/jobs/entry">
            <label>Job</label>
            <repeat nodeset="/data/jobs/entry">
              <input ref="/data/jobs/entry/name">
                <label>What is the employer name?</label>
              </input>
            </repeat>
          </group>
          <group ref="/data/friends/entry">
            <label>Friend</label>
            <repeat nodeset="/data/friends/entry">
              <input ref="/data/friends/entry/name">
                <label>What is the person's name?</label>
              </input>
            </repeat>
          </group>
        </h:body>
      </h:html>"""

# test/data/xml.js forms.simple
SIMPLE = """<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <h:title>Simple</h:title>
    <model>
      <instance>
        <data id="simple">
          <meta>
            <instanceID/>
          </meta>
          <name/>
          <age/>
        </data>
      </instance>

      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" calculate="concat('uuid:', uuid())"/>
      <bind nodeset="/data/name" type="string"/>
      <bind nodeset="/data/age" type="int"/>
    </model>

  </h:head>
  <h:body>
    <input ref="/data/name">
      <label>What is your name?</label>
    </input>
    <input ref="/data/age">
      <label>What is your age?</label>
    </input>
  </h:body>
</h:html>"""

# test/data/xml.js forms.withrepeat
WITHREPEAT = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <model>
      <instance>
        <data id="withrepeat" orx:version="1.0">
          <orx:meta>
            <orx:instanceID/>
          </orx:meta>
          <name/>
          <age/>
          <children>
            <child jr:template="">
              <name/>
              <age/>
            </child>
          </children>
        </data>
      </instance>
      <bind nodeset="/data/orx:meta/orx:instanceID" preload="uid" type="string"/>
      <bind nodeset="/data/name" type="string"/>
      <bind nodeset="/data/age" type="int"/>
      <bind nodeset="/data/children/child/name" type="string"/>
      <bind nodeset="/data/children/child/age" type="int"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/name">
      <label>What is your name?</label>
    </input>
    <input ref="/data/age">
      <label>What is your age?</label>
    </input>
    <group ref="/data/children/child">
      <label>Child</label>
      <repeat nodeset="/data/children/child">
        <input ref="/data/children/child/name">
          <label>What is the child's name?</label>
        </input>
        <input ref="/data/children/child/age">
          <label>What is the child's age?</label>
        </input>
      </repeat>
    </group>
  </h:body>
</h:html>"""

# test/data/xml.js forms.doubleRepeat
DOUBLE_REPEAT = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <model>
      <instance>
        <data id="doubleRepeat" orx:version="1.0">
          <orx:meta>
            <orx:instanceID/>
          </orx:meta>
          <name/>
          <children>
            <child>
              <name/>
              <toys>
                <toy>
                  <name/>
                </toy>
              </toys>
            </child>
          </children>
        </data>
      </instance>
      <bind nodeset="/data/orx:meta/orx:instanceID" preload="uid" type="string"/>
      <bind nodeset="/data/name" type="string"/>
      <bind nodeset="/data/children/child/name" type="string"/>
      <bind nodeset="/data/children/child/toys/toy/name" type="string"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/name">
      <label>What is your name?</label>
    </input>
    <group ref="/data/children/child">
      <label>Child</label>
      <repeat nodeset="/data/children/child">
        <input ref="/data/children/child/name">
          <label>What is the child's name?</label>
        </input>
        <group ref="/data/children/child/toys">
          <label>Child</label>
          <repeat nodeset="/data/children/child/toys/toy">
            <input ref="/data/children/child/toys/toy/name">
              <label>What is the toy's name?</label>
            </input>
          </repeat>
        </group>
      </repeat>
    </group>
  </h:body>
</h:html>"""

# test/data/xml.js forms.selectMultiple
SELECT_MULTIPLE = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:ev="http://www.w3.org/2001/xml-events" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <model>
      <instance>
        <data id="selectMultiple">
          <meta>
            <instanceID/>
          </meta>
          <q1/>
          <g1><q2/></g1>
        </data>
      </instance>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" calculate="concat('uuid:', uuid())"/>
      <bind nodeset="/data/q1" type="string"/>
      <bind nodeset="/data/g1/q2" type="string"/>
    </model>
  </h:head>
  <h:body>
    <select ref="/data/q1"><label>one</label></select>
    <group ref="/data/g1">
      <label>group</label>
      <select ref="/data/g1/q2"><label>two</label></select>
    </group>
  </h:body>
</h:html>"""

# test/data/xml.js forms.encrypted
ENCRYPTED = """<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <h:title>Encrypted</h:title>
    <model>
      <instance>
        <data id="encrypted" version="working3">
          <meta>
            <instanceID/>
          </meta>
          <name/>
          <age/>
          <file/>
        </data>
      </instance>

      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" calculate="concat('uuid:', uuid())"/>
      <bind nodeset="/data/name" type="string"/>
      <bind nodeset="/data/age" type="int"/>
      <bind nodeset="/data/file" type="binary"/>

      <submission base64RsaPublicKey="MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyYh7bSui/0xppQ+J3i5xghfao+559Rqg9X0xNbdMEsW35CzYUfmC8sOzeeUiE4pG7HIEUmiJal+mo70UMDUlywXj9z053n0g6MmtLlUyBw0ZGhEZWHsfBxPQixdzY/c5i7sh0dFzWVBZ7UrqBc2qjRFUYxeXqHsAxSPClTH1nW47Mr2h4juBLC7tBNZA3biZA/XTPt//hAuzv1d6MGiF3vQJXvFTNdfsh6Ckq4KXUsAv+07cLtON4KjrKhqsVNNGbFssTUHVL4A9N3gsuRGt329LHOKBxQUGEnhMM2MEtvk4kaVQrgCqpk1pMU/4HlFtRjOoKdAIuzzxIl56gNdRUQIDAQAB"/>
    </model>

  </h:head>
  <h:body>
    <input ref="/data/name">
      <label>What is your name?</label>
    </input>
    <input ref="/data/age">
      <label>What is your age?</label>
    </input>
    <upload ref="/data/file" mediatype="image/*">
      <label>Give me an image.</label>
    </upload>
  </h:body>
</h:html>"""

# test/data/xml.js forms.binaryType
BINARY_TYPE = """<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:jr="http://openrosa.org/javarosa">
  <h:head>
    <h:title>Submission </h:title>
    <model>
      <instance>
        <data id="binaryType">
          <meta>
            <instanceID/>
          </meta>
          <file1/>
          <file2/>
        </data>
      </instance>

      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" calculate="concat('uuid:', uuid())"/>
      <bind nodeset="/data/file1" type="binary"/>
      <bind nodeset="/data/file2" type="binary"/>
    </model>

  </h:head>
  <h:body>
    <upload ref="/data/file1" mediatype="image/*">
      <label>Give me an image.</label>
    </upload>
    <upload ref="/data/file2" mediatype="video/*">
      <label>Give me a video.</label>
    </upload>
  </h:body>
</h:html>"""


# ---- expected CSV files (briefcase.js), by test name and file name ----------------------------------

CSV_EXPECTED: dict[str, dict[str, str]] = {
    "should output a simple flat table within a zip": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,Alice,30,"Seattle, WA",one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,Bob,34,"Portland, OR",two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,Chelsea,38,"San Francisco, CA",three,,,0,0,,,,0,version
""",
    },
    "should attach submitter information if present": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,Alice,30,"Seattle, WA",one,4,daniela,0,0,,,,0,version
2018-01-01T00:00:00.000Z,Bob,34,"Portland, OR",two,8,hernando,0,0,,,,0,version
2018-01-01T00:00:00.000Z,Chelsea,38,"San Francisco, CA",three,15,lito,0,0,,,,0,version
""",
    },
    "should attach attachments information if present": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,Alice,30,"Seattle, WA",one,,,2,4,,,,0,version
2018-01-01T00:00:00.000Z,Bob,34,"Portland, OR",two,,,1,4,,,,0,version
2018-01-01T00:00:00.000Z,Chelsea,38,"San Francisco, CA",three,,,3,3,,,,0,version
""",
    },
    "should attach review state if present": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,,,,one,,,0,0,missing encrypted form data,,,0,version
2018-01-01T00:00:00.000Z,Bob,34,"Portland, OR",two,,,0,0,,rejected,,0,version
""",
    },
    "should attach device id if present": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,,,,one,,,0,0,missing encrypted form data,,test device,0,version
""",
    },
    "should attach an edit count if nonzero": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,,,,one,,,0,0,,,,3,version
""",
    },
    "should list each submission form version": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,,,,one,,,0,0,,,,0,original
2018-01-01T00:00:00.000Z,,,,two,,,0,0,,,,0,updated
""",
    },
    "should decode xml entities for output": {
        "mytestform.csv": """SubmissionDate,name,age,hometown,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,«Alice»,30,"Seattle, WA",one,,,0,0,,,,0,version
""",
    },
    "should split geopoint columns into four components": {
        "mytestform.csv": """SubmissionDate,name,age,location-Latitude,location-Longitude,location-Altitude,location-Accuracy,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,Alice,30,47.649434,-122.347737,26.8,3.14,one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,Bob,34,47.599115,-122.331753,10,,two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,Chelsea,38,,,,,three,,,0,0,,,,0,version
""",
    },
    "should split known select many fields into value columns": {
        "selectMultiple.csv": """SubmissionDate,meta-instanceID,q1,q1/x,q1/y,q1/z,g1-q2,g1-q2/m,g1-q2/n,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,a b,0,0,0,x y z,0,0,one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,b,0,0,0,m x,1,0,two,,,0,0,,,,0,version
""",
    },
    "should flatten structures within a table": {
        "structuredform.csv": """SubmissionDate,meta-instanceID,name,home-type,home-address-street,home-address-city,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,Alice,Apartment,101 Pike St,"Seattle, WA",one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,Bob,Condo,20 Broadway,"Portland, OR",two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,three,Chelsea,House,99 Mission Ave,"San Francisco, CA",three,,,0,0,,,,0,version
""",
    },
    "should leave out structure names if groupPaths = false": {
        "structuredform.csv": """SubmissionDate,instanceID,name,type,street,city,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,Alice,Apartment,101 Pike St,"Seattle, WA",one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,Bob,Condo,20 Broadway,"Portland, OR",two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,three,Chelsea,House,99 Mission Ave,"San Francisco, CA",three,,,0,0,,,,0,version
""",
    },
    "should split known select many fields And omit group names if asked": {
        "selectMultiple.csv": """SubmissionDate,instanceID,q1,q1/x,q1/y,q1/z,q2,q2/m,q2/n,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,a b,0,0,0,x y z,0,0,one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,b,0,0,0,m x,1,0,two,,,0,0,,,,0,version
""",
    },
    "should handle single-level repeats, with KEY/PARENT_KEY": {
        "singlerepeat.csv": """SubmissionDate,meta-instanceID,name,age,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,Alice,30,one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,Bob,34,two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,three,Chelsea,38,three,,,0,0,,,,0,version
""",
        "singlerepeat-child.csv": """name,age,PARENT_KEY,KEY
Billy,4,two,two/children/child[1]
Blaine,6,two,two/children/child[2]
Candace,2,three,three/children/child[1]
""",
    },
    "should handle nested repeats, with PARENT_KEY/KEY": {
        "multirepeat.csv": """SubmissionDate,meta-instanceID,name,age,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,Alice,30,one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,Bob,34,two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,three,Chelsea,38,three,,,0,0,,,,0,version
""",
        "multirepeat-child.csv": """name,age,PARENT_KEY,KEY
Billy,4,two,two/children/child[1]
Blaine,6,two,two/children/child[2]
Baker,7,two,two/children/child[3]
Candace,2,three,three/children/child[1]
""",
        "multirepeat-toy.csv": """name,PARENT_KEY,KEY
R2-D2,two/children/child[1],two/children/child[1]/toy[1]
BB-8,two/children/child[2],two/children/child[2]/toy[1]
Porg plushie,two/children/child[2],two/children/child[2]/toy[2]
Millennium Falcon,three/children/child[1],three/children/child[1]/toy[1]
X-Wing,three/children/child[1],three/children/child[1]/toy[2]
Pod racer,three/children/child[1],three/children/child[1]/toy[3]
""",
    },
    "should not be fooled by path prefix extensions": {
        "pathprefix.csv": """SubmissionDate,name,children-status,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,Alice,Living at home,one,,,0,0,,,,0,version
""",
        "pathprefix-children.csv": """name,PARENT_KEY,KEY
Bob,one,one/children[1]
Chelsea,one,one/children[2]
""",
    },
    "briefcase replicated test: all-data-types": {
        "all-data-types.csv": """SubmissionDate,some_string,some_int,some_decimal,some_date,some_time,some_date_time,some_geopoint-Latitude,some_geopoint-Longitude,some_geopoint-Altitude,some_geopoint-Accuracy,some_geotrace,some_geoshape,some_barcode,meta-instanceID,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-04-26T08:58:20.525Z,Hola,123,123.456,2018-04-26,08:56:00.000Z,2018-04-26T08:56:00.000Z,43.3149254,-1.9869671,71.80000305175781,15.478,43.314926 -1.9869713 71.80000305175781 10.0;43.3149258 -1.9869694 71.80000305175781 10.0;43.3149258 -1.9869694 71.80000305175781 10.0;,43.31513313655808 -1.9863833114504814 0.0 0.0;43.31552832470026 -1.987161487340927 0.0 0.0;43.315044828733015 -1.9877894595265388 0.0 0.0;43.31459255404834 -1.9869402050971987 0.0 0.0;43.31513313655808 -1.9863833114504814 0.0 0.0;,000049499094,uuid:39f3dd36-161e-45cb-a1a4-395831d253a7,uuid:39f3dd36-161e-45cb-a1a4-395831d253a7,,,0,0,,,,0,
""",
    },
    "briefcase replicated test: nested-repeats": {
        "nested-repeats.csv": """SubmissionDate,meta-instanceID,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-02-01T11:35:19.178Z,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b,,,0,0,,,,0,
""",
        "nested-repeats-g1.csv": """t1,PARENT_KEY,KEY
some text 1,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1]
some text 2,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[2]
some text 3,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]
""",
        "nested-repeats-g2.csv": """t2,PARENT_KEY,KEY
some text 1.1,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1]/g2[1]
some text 1.2,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1]/g2[2]
some text 2.1,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[2],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[2]/g2[1]
some text 3.1,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1]
""",
        "nested-repeats-g3.csv": """t3,PARENT_KEY,KEY
some text 1.1.1,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1]/g2[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[1]/g2[1]/g3[1]
some text 3.1.1,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1]/g3[1]
some text 3.1.2,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1]/g3[2]
some text 3.1.3,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1]/g3[3]
some text 3.1.4,uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1],uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b/g1[3]/g2[1]/g3[4]
""",
    },
    "should disambiguate conflictingly named repeat groups": {
        "ambiguous.csv": """SubmissionDate,meta-instanceID,name,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion
2018-01-01T00:00:00.000Z,one,Alice,one,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,two,Bob,two,,,0,0,,,,0,version
2018-01-01T00:00:00.000Z,three,Chelsea,three,,,0,0,,,,0,version
""",
        "ambiguous-entry~1.csv": """name,PARENT_KEY,KEY
Bobs Hardware,two,two/jobs/entry[1]
Local Coffee,two,two/jobs/entry[2]
Instantaneous Food,three,three/jobs/entry[1]
""",
        "ambiguous-entry~2.csv": """name,PARENT_KEY,KEY
Nasrin,two,two/friends/entry[1]
Ferrence,three,three/friends/entry[1]
Mick,three,three/friends/entry[2]
""",
    },
}

# ---- instances ---------------------------------------------------------------------------------------

# briefcase.js, the instance of 'briefcase replicated test: all-data-types'
ALL_DATA_TYPES_INSTANCE = """<data id="all-data-types" instanceID="uuid:39f3dd36-161e-45cb-a1a4-395831d253a7" submissionDate="2018-04-26T08:58:20.525Z" isComplete="true" markedAsCompleteDate="2018-04-26T08:58:20.525Z" xmlns="http://opendatakit.org/submissions">
  <some_string>Hola</some_string>
  <some_int>123</some_int>
  <some_decimal>123.456</some_decimal>
  <some_date>2018-04-26</some_date>
  <some_time>08:56:00.000Z</some_time>
  <some_date_time>2018-04-26T08:56:00.000Z</some_date_time>
  <some_geopoint>43.3149254 -1.9869671 71.80000305175781 15.478</some_geopoint>
  <some_geotrace>43.314926 -1.9869713 71.80000305175781 10.0;43.3149258 -1.9869694 71.80000305175781 10.0;43.3149258 -1.9869694 71.80000305175781 10.0;</some_geotrace>
  <some_geoshape>43.31513313655808 -1.9863833114504814 0.0 0.0;43.31552832470026 -1.987161487340927 0.0 0.0;43.315044828733015 -1.9877894595265388 0.0 0.0;43.31459255404834 -1.9869402050971987 0.0 0.0;43.31513313655808 -1.9863833114504814 0.0 0.0;</some_geoshape>
  <some_barcode>000049499094</some_barcode>
  <n0:meta xmlns:n0="http://openrosa.org/xforms">
    <n0:instanceID>uuid:39f3dd36-161e-45cb-a1a4-395831d253a7</n0:instanceID>
  </n0:meta>
</data>"""

# briefcase.js, the instance of 'briefcase replicated test: nested-repeats'
NESTED_REPEATS_INSTANCE = """<data id="nested-repeats" instanceID="uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b" version="2018012404" submissionDate="2018-02-01T11:35:19.178Z" isComplete="true" markedAsCompleteDate="2018-02-01T11:35:19.178Z" xmlns="http://opendatakit.org/submissions">
  <g1>
    <t1>some text 1</t1>
    <g2>
      <t2>some text 1.1</t2>
      <g3>
        <t3>some text 1.1.1</t3>
      </g3>
    </g2>
    <g2>
      <t2>some text 1.2</t2>
    </g2>
  </g1>

  <g1>
    <t1>some text 2</t1>
    <g2>
      <t2>some text 2.1</t2>
    </g2>
  </g1>

  <g1>
    <t1>some text 3</t1>
    <g2>
      <t2>some text 3.1</t2>
      <g3>
        <t3>some text 3.1.1</t3>
      </g3>
      <g3>
        <t3>some text 3.1.2</t3>
      </g3>
      <g3>
        <t3>some text 3.1.3</t3>
      </g3>
      <g3>
        <t3>some text 3.1.4</t3>
      </g3>
    </g2>
  </g1>
  <n0:meta xmlns:n0="http://openrosa.org/xforms">
    <n0:instanceID>uuid:0a1b861f-a5fd-4f49-846a-78dcf06cfc1b</n0:instanceID>
  </n0:meta>
</data>"""

# test/data/xml.js instances.encrypted.one and .two: envelopes from Collect, each with one encrypted photo
ENCRYPTED_ONE = """<data id="encrypted" version="working3" encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">
  <base64EncryptedKey>pFT0+tIo8l104xRF8MkyG955oI0eLvdp/Vxy4UH6AvpGVW8fpotfv4Rc51PeDn9jV7kmNk2Q9WGwJs2YmYipxwAZT8genpktoYQR77nT3nqMpkzDfVXLGyl9o8lfuVZNjMRGkaI4Vy7DdsYJI1tkPY03sEopZIBHOl9Du9anyn9FIDbGgcC+W8GDx4jnYRAD3joDFK4wHZTZF7D5/OoDSQjxcMpM6TPmEDPszjHpfXbkf8mtTvy2F5knG9HWmFbaJRy8POC9GQrh68xK8RUJbQX8PBCt/zgR+rTibolgoIKy5KplAS/wKQoi19QfwVRAq9jDzDJeW22tdmBa86X/Fg==</base64EncryptedKey>
  <orx:meta xmlns:orx="http://openrosa.org/xforms"><orx:instanceID>uuid:dcf4a151-5088-453f-99e6-369d67828f7a</orx:instanceID></orx:meta>
  <media><file>1561432508817.jpg.enc</file></media>
  <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
  <base64EncryptedElementSignature>UHIobs8lmLCeKGoPxVFiwXp5JsItoBEwdgmUPF8evnmvRd7Tm1o1wOh9WQNcTGXU+uBH0c/w4UkcFq/GA7JYzxjuMu8QGbjlVd936MM0ynAsrzRxHkiZChnabObeCYzab24dHZooiraVs/yPeyGKykJRpAz3jcXNEUz9X7qLrscEab0wvFamiNBC0C+YzewMI2hGpdkGC1DikbkPbHKNgeyLHCYduAj7rhjKsuhSeRFHvgqYGF6yfLNX6/M3rEnOFOHuVOH7yvI/eqC5bHM5PAv/w9zkFqn1Se5uQHNf7bgCRfhfwpRiLrfzlyQlVCpuEQuD9r+aDoShU9nA2Iw6LA==</base64EncryptedElementSignature>
</data>"""

ENCRYPTED_TWO = """<data id="encrypted" version="working3" encrypted="yes" xmlns="http://www.opendatakit.org/xforms/encrypted">
  <base64EncryptedKey>iyEB1LAlvVE8uaW0HuhLhzwcLceIukqfgusDNdDEE2FFxVtUtSI3FiOuNxhgI/Zbgnaabh/vqeZ3yLXwv0f66pAbN0n8kM9f84VJR18fdUp6doOz7o8IQD7gc3ZfbRXweab/NxnahfYa9ij0Kax1LTKS05Oodk2MewkzwfBhdbf/CfiBP1HSskDio40jdW5f04GkqZsFCPUluF2DfMnwYCo0wdwf2m8o+lSNR+vrFeEYG7LtGE4X90pVrQnJHwFWHGjSwJpg/USn5skBioDKUCv/Dva9xJ+JXUz+QSg6LOuP+SDxsrmf36WKrnE8kWfN4oaBdmIwFSStkLH9foNXUw==</base64EncryptedKey>
  <orx:meta xmlns:orx="http://openrosa.org/xforms"><orx:instanceID>uuid:99b303d9-6494-477b-a30d-d8aae8867335</orx:instanceID></orx:meta>
  <media><file>1561432532482.jpg.enc</file></media>
  <encryptedXmlFile>submission.xml.enc</encryptedXmlFile>
  <base64EncryptedElementSignature>a5A29xMc/7Aas1q1EpxJ/+D8dXsK3I6s9SVyzZRl6+2bILpHvPzG6LuFgTf6SM06Tnr13VNioNJLiTxvxna/nPHak015VSg4TWNvXcDpIbkDNS/2v6BZYv86zrao2DpG2lM9h8oPKy1vbHFcponu1/WVtEgZA/TzNMleJCMKCKQqDxt+n6og1QmWF4LBtsPaGB23ucvziQ57Yp8p+sVvqxs2OrJFYHGJReetqmbIUbyS4xvn3BJQa6BSiNMP35mFSvbLL+sCDSx/PiTTgtJ/oMUP+tqsR376l1TWXQhRHHFsCpwQQeS8GkhjEE6GD1XYscy5ATFv8W0cy2Y6GfN1jA==</base64EncryptedElementSignature>
</data>"""

# test/data/xml.js instances.withrepeat.two (fullInstance('withrepeat', '1.0', 'rtwo', ...))
WITHREPEAT_TWO = full_instance(
    "withrepeat",
    "1.0",
    "rtwo",
    "<name>Bob</name><age>34</age><children><child><name>Billy</name><age>4</age></child>"
    "<child><name>Blaine</name><age>6</age></child></children>",
)

# test/data/xml.js instances.doubleRepeat.double
# (the orx prefix declared on the root: Central's test parser accepts it undeclared, a server does not)
DOUBLE_REPEAT_DOUBLE = """<data id="doubleRepeat" version="1.0" xmlns:orx="http://openrosa.org/xforms">
    <orx:meta><orx:instanceID>double</orx:instanceID></orx:meta>
    <name>Vick</name>
    <children>
      <child>
        <name>Alice</name>
      </child>
      <child>
        <name>Bob</name>
        <toys>
          <toy><name>Twilight Sparkle</name></toy>
          <toy><name>Pinkie Pie</name></toy>
          <toy><name>Applejack</name></toy>
          <toy><name>Spike</name></toy>
        </toys>
      </child>
      <child>
        <name>Chelsea</name>
        <toys>
          <toy><name>Rainbow Dash</name></toy>
          <toy><name>Rarity</name></toy>
          <toy><name>Fluttershy</name></toy>
          <toy><name>Princess Luna</name></toy>
        </toys>
      </child>
    </children>
  </data>"""
